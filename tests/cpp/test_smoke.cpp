#include <gtest/gtest.h>

#include "c3/core/errors.hpp"

TEST(Smoke, ErrorsCarryMessages) {
    try {
        C3_CHECK(false, c3::ShapeError, "expected ", 3, " got ", 4);
        FAIL();
    } catch (const c3::Error& e) {
        EXPECT_STREQ(e.what(), "expected 3 got 4");
    }
}
