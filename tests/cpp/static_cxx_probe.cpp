// A shared library that uses the C++ library's streams and locales, linked with -static-libstdc++ by the
// module_link tests: with the Python module's link options it must export none of the C++ library's symbols.
#include <fstream>
#include <sstream>
#include <string>

extern "C" int c3_static_cxx_probe(const char* path) {
    std::ifstream file(path);
    std::string word;
    file >> word;
    std::ostringstream digits;
    digits << word.size();
    return int(digits.str().size());
}
