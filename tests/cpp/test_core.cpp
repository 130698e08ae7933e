// core/: the checked parallel loop and the one UTF-8 decoder.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "c3/analysis/edit_distance.hpp"
#include "c3/core/parallel.hpp"
#include "c3/core/utf8.hpp"
#include "c3/text/utf8.hpp"

using namespace c3;

TEST(Parallel, CheckedLoopCarriesTheLowestIndexExceptionToTheCaller) {
    // With two or more threads, index 300 and index 700 fall to different threads (static schedule).
    std::vector<int> ran(1000, 0);
    try {
        parallel_for_checked(ran.size(), [&](size_t i) {
            ran[i] = 1;
            if (i == 300 || i == 700) throw ValueError("thrown at index " + std::to_string(i));
        });
        ADD_FAILURE() << "the exception did not reach the caller";
    } catch (const ValueError& e) {
        EXPECT_STREQ(e.what(), "thrown at index 300");
    }
    EXPECT_EQ(std::count(ran.begin(), ran.end(), 1), 1000);  // every index ran

    // From the last thread's share alone.
    EXPECT_THROW(parallel_for_checked(ran.size(), [&](size_t i) {
        if (i == ran.size() - 1) throw ShapeError("last");
    }), ShapeError);
    // No exception: nothing is thrown, and every index ran once.
    std::vector<int> counts(1000, 0);
    parallel_for_checked(counts.size(), [&](size_t i) { counts[i] += 1; });
    EXPECT_EQ(std::count(counts.begin(), counts.end(), 1), 1000);
}

// A SerialRegion keeps the loops its thread reaches on that thread (a data-parallel share with large products
// computes the same alone as beside other shares); the threads come back when it ends.
TEST(Parallel, SerialRegionKeepsLoopsOnTheCallingThread) {
#ifdef _OPENMP
    const int saved = num_threads();
    set_num_threads(4);
    auto threads_used = [] {
        std::vector<int> thread_of(64, -1);
        parallel_for(thread_of.size(), [&](size_t i) { thread_of[i] = omp_get_thread_num(); });
        std::sort(thread_of.begin(), thread_of.end());
        return size_t(std::unique(thread_of.begin(), thread_of.end()) - thread_of.begin());
    };
    EXPECT_EQ(threads_used(), 4u);  // static schedule: 16 indices to each of the four threads
    {
        const SerialRegion serial;
        EXPECT_EQ(num_threads(), 1);
        EXPECT_EQ(threads_used(), 1u);
        {
            const SerialRegion nested;
            EXPECT_EQ(num_threads(), 1);
        }
        EXPECT_EQ(num_threads(), 1);
    }
    EXPECT_EQ(num_threads(), 4);
    EXPECT_EQ(threads_used(), 4u);
    set_num_threads(saved);
#else
    GTEST_SKIP() << "built without OpenMP";
#endif
}

TEST(Utf8, OneDecoderWithTheCallersErrorType) {
    EXPECT_EQ(c3::decode_utf8("a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80"), (std::u32string{U'a', 0xE9, 0x4E2D, 0x1F600}));
    EXPECT_EQ(text::decode_utf8("a\xC3\xA9"), (std::vector<uint32_t>{'a', 0xE9}));
    const std::vector<std::string> invalid = {"ab\xFF", "a\xC3", "ab\xC3\x28", "\xC0\xAF", "x\xE0\x80\xAF",
                                              "\xED\xA0\x80", "\xF4\x90\x80\x80"};
    for (const std::string& bytes : invalid) {
        std::string value_message, tokenizer_message;
        try {
            analysis::decode_utf8(bytes);
        } catch (const ValueError& e) {
            value_message = e.what();
        }
        try {
            text::decode_utf8(bytes);
        } catch (const TokenizerError& e) {
            tokenizer_message = e.what();
        }
        EXPECT_NE(value_message.find("invalid UTF-8 at byte offset"), std::string::npos) << value_message;
        EXPECT_EQ(value_message, tokenizer_message);
    }
}
