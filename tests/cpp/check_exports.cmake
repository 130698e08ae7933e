# cmake -DNM=<nm> -DLIBRARY=<shared library> -DEXPECT=none|some -P check_exports.cmake
# Counts the library's exported unique symbols (nm type "u": merged across every object in the process, whatever
# the dlopen flags). EXPECT=none fails if there are any; EXPECT=some fails if there are none (the check can see
# them on this toolchain).
execute_process(COMMAND "${NM}" -D --defined-only "${LIBRARY}" OUTPUT_VARIABLE symbols RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${NM} -D ${LIBRARY} failed: ${status}")
endif()
string(REGEX MATCHALL "[0-9a-f]+ u [^\n]+" unique "${symbols}")
list(LENGTH unique count)
if(EXPECT STREQUAL "none" AND count GREATER 0)
  list(SUBLIST unique 0 5 first)
  message(FATAL_ERROR "${LIBRARY} exports ${count} unique symbols, e.g. ${first}")
elseif(EXPECT STREQUAL "some" AND count EQUAL 0)
  message(FATAL_ERROR "${LIBRARY} exports no unique symbol: the check cannot tell the link options' effect here")
endif()
message(STATUS "${LIBRARY}: ${count} unique symbols exported")
