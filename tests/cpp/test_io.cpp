// Checkpoint IO: half/bfloat16 conversions, safetensors round trips (single and sharded), a battery of
// malformed files that must end in FormatError (never a crash), and Hugging Face config.json parsing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "c3/core/float16.hpp"
#include "c3/io/hf_config.hpp"
#include "c3/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using namespace c3;
using namespace c3::io;

// A fresh directory per test, removed afterwards.
class TempDir {
public:
    TempDir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() / ("c3_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code error;
        fs::remove_all(path_, error);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string path() const { return path_.string(); }

private:
    fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string length_prefix(uint64_t length) {
    std::string bytes(8, '\0');
    for (size_t i = 0; i < 8; ++i) bytes[i] = char((length >> (8 * i)) & 0xff);
    return bytes;
}

// A file with the given header text and `data_bytes` zero bytes of data.
std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
    return length_prefix(header.size()) + header + std::string(data_bytes, '\0');
}

template <typename Error, typename Body>
std::string expect_error(Body&& body) {
    try {
        body();
    } catch (const Error& error) {
        return error.what();
    } catch (const std::exception& error) {
        ADD_FAILURE() << "wrong exception type: " << error.what();
        return "";
    }
    ADD_FAILURE() << "no exception";
    return "";
}

bool same_bits(float a, float b) { return float_bits(a) == float_bits(b); }

// ------------------------------------------------------------------------------------------------------------
// float16 / bfloat16

TEST(Float16, KnownHalfValues) {
    EXPECT_EQ(half_to_float(0x3c00), 1.0f);
    EXPECT_EQ(half_to_float(0xc000), -2.0f);
    EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
    EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.0f, -14));
    EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(half_to_float(0x03ff), 1023 * std::ldexp(1.0f, -24));
    EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
    EXPECT_TRUE(std::isinf(half_to_float(0x7c00)) && half_to_float(0x7c00) > 0);
    EXPECT_TRUE(std::isinf(half_to_float(0xfc00)) && half_to_float(0xfc00) < 0);
    EXPECT_TRUE(std::isnan(half_to_float(0x7e00)));
    EXPECT_TRUE(std::isnan(half_to_float(0x7c01)));  // signalling NaN stays NaN
    EXPECT_TRUE(std::signbit(half_to_float(0x8000)) && half_to_float(0x8000) == 0.0f);

    EXPECT_EQ(float_to_half(1.0f), 0x3c00);
    EXPECT_EQ(float_to_half(-2.0f), 0xc000);
    EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
    EXPECT_EQ(float_to_half(65519.996f), 0x7bff);  // just below the halfway point to 65536
    EXPECT_EQ(float_to_half(65520.0f), 0x7c00);    // halfway, odd mantissa: ties to even is inf
    EXPECT_EQ(float_to_half(1e6f), 0x7c00);
    EXPECT_EQ(float_to_half(-1e6f), 0xfc00);
    EXPECT_EQ(float_to_half(std::numeric_limits<float>::infinity()), 0x7c00);
    EXPECT_EQ(float_to_half(-0.0f), 0x8000);
    EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
    EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
    EXPECT_EQ(float_to_half(std::ldexp(1.0f, -30)), 0x0000);  // underflow
    EXPECT_EQ(float_to_half(std::numeric_limits<float>::denorm_min()), 0x0000);
    EXPECT_EQ(float_to_half(0.1f), 0x2e66);
}

TEST(Float16, HalfRoundsToNearestEven) {
    // Normal range: 1 + 2^-11 is halfway between 1 (even) and 1 + 2^-10 (odd).
    EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
    EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // between 0x3c01 (odd) and 0x3c02
    EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);  // just above the tie
    // Subnormal range, in units of 2^-24.
    const float unit = std::ldexp(1.0f, -24);
    EXPECT_EQ(float_to_half(0.5f * unit), 0x0000);   // tie between 0 and 1: even is 0
    EXPECT_EQ(float_to_half(0.75f * unit), 0x0001);
    EXPECT_EQ(float_to_half(1.5f * unit), 0x0002);   // tie between 1 and 2
    EXPECT_EQ(float_to_half(2.5f * unit), 0x0002);   // tie between 2 and 3
    EXPECT_EQ(float_to_half(1023.5f * unit), 0x0400);  // rounds up into the smallest normal
    EXPECT_EQ(float_to_half(-2.5f * unit), 0x8002);
}

TEST(Float16, HalfRoundTripsEveryPattern) {
    for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
        const float value = half_to_float(uint16_t(bits));
        if (std::isnan(value)) {
            EXPECT_TRUE(std::isnan(half_to_float(float_to_half(value)))) << bits;
            EXPECT_EQ(float_to_half(value) & 0x8000, bits & 0x8000);
            continue;
        }
        ASSERT_EQ(float_to_half(value), bits) << "pattern " << bits;
    }
}

// Checks that to_16 gives the nearest representable value (ties to even) by comparing with its neighbours.
template <typename To16, typename From16>
void expect_nearest_even(float value, To16 to_16, From16 from_16) {
    const uint16_t rounded = to_16(value);
    const double result = from_16(rounded);
    const double exact = value;
    if (std::isinf(result)) return;  // overflow is checked by the known values
    for (int step : {-1, 1}) {
        const uint16_t neighbour_bits = uint16_t(rounded + step);
        const double neighbour = from_16(neighbour_bits);
        if (std::isnan(neighbour) || ((neighbour_bits ^ rounded) & 0x8000)) continue;
        const double mine = std::fabs(exact - result), theirs = std::fabs(exact - neighbour);
        ASSERT_LE(mine, theirs) << "value " << value << " rounded to " << result << " but " << neighbour << " is nearer";
        if (mine == theirs) {
            ASSERT_EQ(rounded & 1, 0) << "tie at " << value << " not rounded to even";
        }
    }
}

TEST(Float16, RandomFloatsRoundToNearest) {
    std::mt19937 generator(7);
    std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
    for (size_t i = 0; i < 300000; ++i) {
        // Bias toward the half range: exponents around [-26, 17].
        uint32_t pattern = bits(generator);
        const uint32_t exponent = 100 + (pattern >> 24) % 45;
        pattern = (pattern & 0x807fffffu) | (exponent << 23);
        expect_nearest_even(float_from_bits(pattern), float_to_half, half_to_float);
        expect_nearest_even(float_from_bits(bits(generator)), float_to_bf16, bf16_to_float);
    }
}

#ifdef __FLT16_MAX__
TEST(Float16, MatchesCompilerHalfConversion) {
    for (uint64_t pattern = 0; pattern <= 0xffffffffu; pattern += 997) {
        const float value = float_from_bits(uint32_t(pattern));
        const _Float16 reference = static_cast<_Float16>(value);
        uint16_t reference_bits;
        std::memcpy(&reference_bits, &reference, 2);
        if (std::isnan(value)) {
            ASSERT_TRUE(std::isnan(half_to_float(float_to_half(value))));
            continue;
        }
        ASSERT_EQ(float_to_half(value), reference_bits) << "float bits " << pattern;
    }
}
#endif

TEST(Float16, KnownBfloat16Values) {
    EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
    EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
    EXPECT_EQ(bf16_to_float(0xc040), -3.0f);
    EXPECT_EQ(float_to_bf16(float_from_bits(0x3f808000u)), 0x3f80);  // tie, even stays
    EXPECT_EQ(float_to_bf16(float_from_bits(0x3f818000u)), 0x3f82);  // tie, odd rounds up
    EXPECT_EQ(float_to_bf16(float_from_bits(0x3f808001u)), 0x3f81);  // above the tie
    EXPECT_EQ(float_to_bf16(float_from_bits(0x3f807fffu)), 0x3f80);  // below the tie
    EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past the largest bf16
    EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
    EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
    EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
    EXPECT_EQ(float_to_bf16(float_from_bits(0x00000001u)), 0x0000);  // float subnormals
    EXPECT_EQ(float_to_bf16(float_from_bits(0x00018000u)), 0x0002);  // subnormal tie, odd rounds up
    EXPECT_EQ(float_to_bf16(float_from_bits(0x00010000u)), 0x0001);  // bf16 subnormal kept exactly
    // NaNs stay NaN, signalling ones included (truncation alone would turn 0x7f800001 into inf).
    EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(float_from_bits(0x7f800001u)))));
    EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    EXPECT_EQ(float_to_bf16(float_from_bits(0xffc00000u)) & 0x8000, 0x8000);
}

TEST(Float16, Bfloat16RoundTripsEveryPattern) {
    for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
        const float value = bf16_to_float(uint16_t(bits));
        if (std::isnan(value)) {
            EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(value))));
            continue;
        }
        ASSERT_EQ(float_to_bf16(value), bits) << "pattern " << bits;
    }
}

TEST(Float16, DoubleNarrowsWithoutDoubleRounding) {
    // 1 + 2^-11 + 2^-40: above the half tie, but float rounding drops the 2^-40 and makes it an exact tie.
    const double value = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
    EXPECT_EQ(float_to_half(float(value)), 0x3c00);  // what double rounding gives
    EXPECT_EQ(double_to_half(value), 0x3c01);        // the correctly rounded answer
    const double bf_value = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
    EXPECT_EQ(double_to_bf16(bf_value), 0x3f81);
    EXPECT_EQ(double_to_half(1.0 + std::ldexp(1.0, -11)), 0x3c00);  // exact ties still go to even
    EXPECT_EQ(double_to_half(1e300), 0x7c00);
    EXPECT_EQ(double_to_bf16(-1e300), 0xff80);
    EXPECT_EQ(double_to_half(1e-300), 0x0000);
    EXPECT_TRUE(std::isnan(half_to_float(double_to_half(std::nan("")))));
}

// ------------------------------------------------------------------------------------------------------------
// safetensors round trips

std::vector<float> test_values(size_t count, uint32_t seed) {
    std::mt19937 generator(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> values(count);
    for (float& value : values) value = normal(generator);
    if (count > 3) {
        values[0] = std::numeric_limits<float>::infinity();
        values[1] = -0.0f;
        values[2] = 1e-6f;  // a half subnormal
        values[3] = 70000.0f;  // past the half range
    }
    return values;
}

float expected_after(DType dtype, float value) {
    switch (dtype) {
        case DType::F16: return half_to_float(float_to_half(value));
        case DType::BF16: return bf16_to_float(float_to_bf16(value));
        default: return value;
    }
}

TEST(Safetensors, RoundTripEachFloatDtype) {
    TempDir directory;
    const std::vector<float> matrix = test_values(6 * 7, 1), vector = test_values(5, 2);
    const float scalar = 3.25f;
    for (DType dtype : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
        const std::string path = directory.file(std::string("round_trip_") + dtype_name(dtype) + ".safetensors");
        write_safetensors<float>(path,
                                 {{"layer.weight", {6, 7}, matrix.data()},
                                  {"layer.bias", {5}, vector.data()},
                                  {"scale", {}, &scalar},
                                  {"empty", {0, 3}, nullptr}},
                                 dtype, {{"format", "pt"}, {"note", "round trip"}});
        EXPECT_FALSE(fs::exists(path + ".tmp"));
        const SafetensorsFile file = SafetensorsFile::open(path);
        ASSERT_EQ(file.tensors().size(), 4u);
        EXPECT_EQ(file.tensors()[0].name, "empty");  // sorted by name
        EXPECT_EQ(file.metadata().at("note"), "round trip");
        EXPECT_EQ(file.info("layer.weight").dtype, dtype);
        EXPECT_EQ(file.info("layer.weight").shape, (Shape{6, 7}));
        EXPECT_EQ(file.info("scale").shape, Shape{});
        EXPECT_EQ(file.data_offset() % 8, 0u);
        const std::vector<float> read_matrix = file.read<float>("layer.weight");
        for (size_t i = 0; i < matrix.size(); ++i)
            ASSERT_TRUE(same_bits(read_matrix[i], expected_after(dtype, matrix[i]))) << dtype_name(dtype) << " " << i;
        const std::vector<double> read_vector = file.read<double>("layer.bias");
        for (size_t i = 0; i < vector.size(); ++i) ASSERT_EQ(read_vector[i], double(expected_after(dtype, vector[i])));
        EXPECT_EQ(file.read<float>("scale"), std::vector<float>{3.25f});
        EXPECT_TRUE(file.read<float>("empty").empty());
    }
}

TEST(Safetensors, DoubleBuffersAndRawDtypes) {
    TempDir directory;
    const std::string path = directory.file("mixed.safetensors");
    const std::vector<double> precise = {1.0 / 3.0, 1e-310, -2.5, 1e300};
    const std::vector<int64_t> ids = {1, -2, 1LL << 40};
    const std::vector<uint8_t> flags = {1, 0, 1};
    const std::vector<uint16_t> bf16 = {float_to_bf16(1.5f), float_to_bf16(-4.0f)};
    write_safetensors(path, {{"ids", DType::I64, {3}, ids.data()},
                             {"flags", DType::BOOL, {3}, flags.data()},
                             {"half", DType::BF16, {2}, bf16.data()}});
    const SafetensorsFile file = SafetensorsFile::open(path);
    const std::vector<unsigned char> raw = file.read_raw("ids");
    ASSERT_EQ(raw.size(), 24u);
    EXPECT_EQ(std::memcmp(raw.data(), ids.data(), 24), 0);
    EXPECT_EQ(file.read<float>("half"), (std::vector<float>{1.5f, -4.0f}));
    EXPECT_THROW(file.read<float>("ids"), ValueError);  // integers do not convert silently

    const std::string doubles = directory.file("doubles.safetensors");
    write_safetensors<double>(doubles, {{"x", {4}, precise.data()}}, DType::F64);
    EXPECT_EQ(SafetensorsFile::open(doubles).read<double>("x"), precise);  // F64 -> double is exact
    const std::vector<float> narrowed = SafetensorsFile::open(doubles).read<float>("x");
    EXPECT_EQ(narrowed[0], float(1.0 / 3.0));
    EXPECT_TRUE(std::isinf(narrowed[3]));
}

TEST(Safetensors, LayoutMatchesThePythonPackage) {
    // The bytes safetensors 0.8 writes for {"b": zeros(3) f32, "a": zeros(1) f16, "Z": zeros(2) f64},
    // metadata {"k": "v"}: widest dtype first, then by name; header padded with spaces to 8 bytes.
    TempDir directory;
    const std::string path = directory.file("layout.safetensors");
    const std::vector<float> b(3, 0.0f), a(1, 0.0f);
    const std::vector<double> z(2, 0.0);
    const std::vector<uint16_t> a_half(1, 0);
    write_safetensors(path, {{"b", DType::F32, {3}, b.data()}, {"a", DType::F16, {1}, a_half.data()},
                             {"Z", DType::F64, {2}, z.data()}},
                      {{"k", "v"}});
    const std::string expected_header =
        "{\"__metadata__\":{\"k\":\"v\"},\"Z\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]},"
        "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[28,30]}}  ";
    const std::string bytes = read_bytes(path);
    ASSERT_EQ(bytes.size(), 8 + expected_header.size() + 30);
    EXPECT_EQ(bytes.substr(0, 8), length_prefix(expected_header.size()));
    EXPECT_EQ(bytes.substr(8, expected_header.size()), expected_header);
}

TEST(Safetensors, LookupAndWriterErrors) {
    TempDir directory;
    const std::string path = directory.file("small.safetensors");
    const std::vector<float> values = {1, 2, 3, 4};
    write_safetensors<float>(path, {{"w", {2, 2}, values.data()}}, DType::F32);
    const SafetensorsFile file = SafetensorsFile::open(path);
    EXPECT_TRUE(file.contains("w"));
    EXPECT_FALSE(file.contains("v"));
    const std::string missing = expect_error<FormatError>([&] { file.info("v"); });
    EXPECT_NE(missing.find("'v'"), std::string::npos);
    EXPECT_NE(missing.find(path), std::string::npos);
    std::vector<float> too_small(3);
    EXPECT_THROW(file.read_into("w", too_small.data(), too_small.size()), ShapeError);

    EXPECT_THROW(write_safetensors<float>(path, {{"w", {1}, values.data()}, {"w", {1}, values.data()}}, DType::F32),
                 ValueError);
    EXPECT_THROW(write_safetensors<float>(path, {{"__metadata__", {1}, values.data()}}, DType::F32), ValueError);
    EXPECT_THROW(write_safetensors<float>(path, {{"w", {1}, values.data()}}, DType::I32), ValueError);
    EXPECT_THROW(write_safetensors<float>(path, {{"w", {4}, nullptr}}, DType::F32), ValueError);
    // The failed writes left the earlier file intact.
    EXPECT_EQ(SafetensorsFile::open(path).read<float>("w"), values);

    const std::string unwritable = directory.file("no_such_directory/x.safetensors");
    EXPECT_THROW(write_safetensors<float>(unwritable, {{"w", {4}, values.data()}}, DType::F32), IOError);
    EXPECT_FALSE(fs::exists(unwritable + ".tmp"));
    EXPECT_THROW(SafetensorsFile::open(directory.file("absent.safetensors")), IOError);
    EXPECT_THROW(SafetensorsFile::open(directory.path()), IOError);
}

// ------------------------------------------------------------------------------------------------------------
// Malformed files: each must be a FormatError naming the file, never a crash or a huge allocation.

struct MalformedCase {
    const char* label;
    std::string bytes;
    const char* expected_words;  // a piece the message must contain
};

std::vector<MalformedCase> malformed_cases() {
    const std::string valid_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    std::string deep(100000, '[');
    return {
        {"empty file", "", "too short"},
        {"truncated header length", std::string("\x10\x00\x00", 3), "too short"},
        {"header length past EOF", length_prefix(100) + "{}", "past the end"},
        {"huge header length", length_prefix(uint64_t(1) << 60) + "{}", "above the limit"},
        {"all-ones header length", length_prefix(~uint64_t(0)) + "{}", "above the limit"},
        {"invalid JSON", safetensors_bytes("{\"w\": {", 0), "not valid JSON"},
        {"binary garbage header", safetensors_bytes(std::string("\xff\xfe\x00\x01garbage", 11), 0), "not valid JSON"},
        {"non-object JSON", safetensors_bytes("[1, 2, 3]", 0), "must be a JSON object"},
        {"string JSON", safetensors_bytes("\"text\"", 0), "must be a JSON object"},
        {"deeply nested JSON", safetensors_bytes(deep, 0), "nests"},
        {"entry not an object", safetensors_bytes(R"({"w": 5})", 0), "entry must be an object"},
        {"missing dtype", safetensors_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4), "dtype"},
        {"unknown dtype", safetensors_bytes(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1),
         "unknown dtype"},
        {"missing shape", safetensors_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4), "shape"},
        {"negative shape", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
         "non-negative"},
        {"fractional shape", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
         "non-negative"},
        {"shape beyond 64 bits",
         safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}})", 4), "non-negative"},
        {"overflowing shape",
         safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}})", 4),
         "overflow"},
        {"overflowing byte count",
         safetensors_bytes(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
         "overflow"},
        {"offsets not a pair", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
         "data_offsets"},
        {"negative offsets", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
         "non-negative"},
        {"begin after end", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
         "begin > end"},
        {"offsets past end", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
         "past the end"},
        {"size mismatch", safetensors_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 12),
         "needs 12"},
        {"overlapping tensors",
         safetensors_bytes(
             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             12),
         "overlap"},
        {"truncated data section", safetensors_bytes("{" + valid_entry + "}", 5), "past the end"},
        {"metadata not an object", safetensors_bytes(R"({"__metadata__":[1]})", 0), "__metadata__"},
        {"metadata value not a string", safetensors_bytes(R"({"__metadata__":{"k":1}})", 0), "__metadata__"},
    };
}

TEST(SafetensorsMalformed, EveryCaseIsAFormatErrorNamingTheFile) {
    TempDir directory;
    size_t number = 0;
    for (const MalformedCase& test_case : malformed_cases()) {
        const std::string path = directory.file("malformed_" + std::to_string(number++) + ".safetensors");
        write_bytes(path, test_case.bytes);
        const std::string message = expect_error<FormatError>([&] { SafetensorsFile::open(path); });
        EXPECT_NE(message.find(path), std::string::npos) << test_case.label << ": " << message;
        EXPECT_NE(message.find(test_case.expected_words), std::string::npos) << test_case.label << ": " << message;
    }
}

TEST(SafetensorsMalformed, ErrorsNameTheTensor) {
    TempDir directory;
    const std::string path = directory.file("named.safetensors");
    write_bytes(path, safetensors_bytes(R"({"model.layers.0.q.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 12));
    const std::string message = expect_error<FormatError>([&] { SafetensorsFile::open(path); });
    EXPECT_NE(message.find("model.layers.0.q.weight"), std::string::npos) << message;
}

// Every truncation and many random corruptions of a valid file either open and read, or throw a c3 error.
TEST(SafetensorsMalformed, TruncationsAndCorruptionsNeverCrash) {
    TempDir directory;
    const std::string path = directory.file("valid.safetensors");
    const std::vector<float> values = test_values(12, 3);
    write_safetensors<float>(path, {{"a", {3, 4}, values.data()}, {"b", {2}, values.data()}}, DType::BF16,
                             {{"format", "pt"}});
    const std::string original = read_bytes(path);
    const std::string corrupt = directory.file("corrupt.safetensors");
    auto open_and_read = [&](const std::string& bytes) {
        write_bytes(corrupt, bytes);
        try {
            const SafetensorsFile file = SafetensorsFile::open(corrupt);
            for (const TensorInfo& tensor : file.tensors()) {
                if (is_float_dtype(tensor.dtype)) file.read<float>(tensor.name);
                else file.read_raw(tensor.name);
            }
        } catch (const c3::Error&) {
        }
    };
    for (size_t length = 0; length < original.size(); ++length) {
        write_bytes(corrupt, original.substr(0, length));
        EXPECT_THROW(SafetensorsFile::open(corrupt), c3::Error) << length;
        open_and_read(original.substr(0, length));
    }
    std::mt19937 generator(11);
    for (size_t trial = 0; trial < 2000; ++trial) {
        std::string bytes = original;
        const size_t flips = 1 + generator() % 4;
        for (size_t i = 0; i < flips; ++i) {
            const size_t position = generator() % std::min<size_t>(bytes.size(), 8 + 120);
            bytes[position] = char(generator() & 0xff);
        }
        open_and_read(bytes);
    }
}

// ------------------------------------------------------------------------------------------------------------
// Checkpoints

TEST(ShardedSafetensorsReader, ShardedRoundTrip) {
    TempDir directory;
    std::vector<std::vector<float>> storage;
    std::vector<NamedTensor<float>> tensors;
    for (size_t layer = 0; layer < 5; ++layer) {
        storage.push_back(test_values(64, uint32_t(10 + layer)));
        tensors.push_back({"model.layers." + std::to_string(layer) + ".weight", {8, 8}, nullptr});
    }
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = storage[i].data();
    // 64 floats in F16 are 128 bytes; a 300-byte limit packs two per shard.
    const std::vector<std::string> written = write_sharded(directory.path(), tensors, DType::F16, 300, {{"format", "pt"}});
    ASSERT_EQ(written.size(), 4u);  // three shards and the index
    EXPECT_TRUE(fs::exists(directory.file("model-00001-of-00003.safetensors")));
    EXPECT_TRUE(fs::exists(directory.file("model-00003-of-00003.safetensors")));
    const nlohmann::json index = nlohmann::json::parse(read_bytes(directory.file("model.safetensors.index.json")));
    EXPECT_EQ(index["metadata"]["total_size"], 5 * 128);
    EXPECT_EQ(index["weight_map"]["model.layers.4.weight"], "model-00003-of-00003.safetensors");

    const ShardedSafetensorsReader checkpoint = ShardedSafetensorsReader::open(directory.path());
    EXPECT_EQ(checkpoint.names().size(), 5u);
    EXPECT_EQ(checkpoint.files().size(), 3u);
    for (size_t layer = 0; layer < 5; ++layer) {
        const std::vector<float> values = checkpoint.read<float>(tensors[layer].name);
        for (size_t i = 0; i < values.size(); ++i)
            ASSERT_TRUE(same_bits(values[i], expected_after(DType::F16, storage[layer][i])));
    }
    EXPECT_EQ(checkpoint.info("model.layers.2.weight").shape, (Shape{8, 8}));
    const std::string missing = expect_error<FormatError>([&] { checkpoint.read<float>("lm_head.weight"); });
    EXPECT_NE(missing.find("lm_head.weight"), std::string::npos);
    EXPECT_NE(missing.find(directory.path()), std::string::npos);

    // Rewriting small gives a single file, and the stale index goes away.
    write_sharded(directory.path(), std::vector<NamedTensor<float>>{tensors[0]}, DType::F32, 1 << 20);
    EXPECT_FALSE(fs::exists(directory.file("model.safetensors.index.json")));
    const ShardedSafetensorsReader single = ShardedSafetensorsReader::open(directory.path());
    EXPECT_EQ(single.names(), std::vector<std::string>{"model.layers.0.weight"});
    EXPECT_EQ(single.read<float>("model.layers.0.weight"), storage[0]);
    // A single file opens directly too.
    EXPECT_EQ(ShardedSafetensorsReader::open(directory.file("model.safetensors")).names().size(), 1u);
}

TEST(ShardedSafetensorsReader, BadIndexesAreFormatErrors) {
    TempDir directory;
    const std::vector<float> values = {1, 2};
    write_safetensors<float>(directory.file("shard-a.safetensors"), {{"a", {2}, values.data()}}, DType::F32);
    auto index_with = [&](const std::string& text) {
        write_bytes(directory.file("model.safetensors.index.json"), text);
        return expect_error<FormatError>([&] { ShardedSafetensorsReader::open(directory.path()); });
    };
    EXPECT_NE(index_with(R"({"weight_map": {"a": "missing.safetensors"}})").find("missing.safetensors"),
              std::string::npos);
    EXPECT_NE(index_with(R"({"weight_map": {"b": "shard-a.safetensors"}})").find("'b'"), std::string::npos);
    EXPECT_NE(index_with(R"({"weight_map": {"a": "../shard-a.safetensors"}})").find("plain file name"),
              std::string::npos);
    EXPECT_NE(index_with(R"({"weight_map": [1]})").find("weight_map"), std::string::npos);
    EXPECT_NE(index_with("{not json").find("not valid JSON"), std::string::npos);
    write_bytes(directory.file("model.safetensors.index.json"), R"({"weight_map": {"a": "shard-a.safetensors"}})");
    EXPECT_EQ(ShardedSafetensorsReader::open(directory.path()).read<float>("a"), values);

    TempDir empty;
    EXPECT_THROW(ShardedSafetensorsReader::open(empty.path()), IOError);
}

// ------------------------------------------------------------------------------------------------------------
// config.json

nlohmann::json qwen2_transformers5() {
    return nlohmann::json::parse(R"({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 1536,
        "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "tie_word_embeddings": true,
        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "use_sliding_window": false, "sliding_window": null,
        "max_window_layers": 21, "layer_types": ["full_attention"], "dtype": "bfloat16"})");
}

nlohmann::json llama_transformers4() {
    return nlohmann::json::parse(R"({
        "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05, "rope_theta": 100000, "rope_scaling": null, "tie_word_embeddings": true,
        "attention_bias": false, "mlp_bias": false, "bos_token_id": 0, "eos_token_id": [0, 2], "hidden_act": "silu"})");
}

TEST(HfConfig, ReadsQwen2WithRopeParameters) {
    const TransformerConfig config = parse_hf_config(qwen2_transformers5(), "qwen.json");
    EXPECT_EQ(config.model_type, "qwen2");
    EXPECT_EQ(config.vocab_size, 151936u);
    EXPECT_EQ(config.hidden_size, 1536u);
    EXPECT_EQ(config.intermediate_size, 8960u);
    EXPECT_EQ(config.num_layers, 28u);
    EXPECT_EQ(config.num_heads, 12u);
    EXPECT_EQ(config.num_kv_heads, 2u);
    EXPECT_EQ(config.head_dim, 128u);
    EXPECT_EQ(config.max_position_embeddings, 32768u);
    EXPECT_EQ(config.rope_theta, 1e6);
    EXPECT_EQ(config.rms_norm_eps, 1e-6);
    EXPECT_TRUE(config.attention_bias);
    EXPECT_TRUE(config.tie_word_embeddings);
    EXPECT_EQ(config.bos_token_id, 151643);
    EXPECT_EQ(config.eos_token_id, 151645);
}

TEST(HfConfig, ReadsLlamaWithTopLevelRopeTheta) {
    const TransformerConfig config = parse_hf_config(llama_transformers4(), "llama.json");
    EXPECT_EQ(config.model_type, "llama");
    EXPECT_EQ(config.rope_theta, 100000.0);
    EXPECT_EQ(config.head_dim, 64u);
    EXPECT_FALSE(config.attention_bias);
    EXPECT_EQ(config.eos_token_id, 0);  // the first of a list
    EXPECT_EQ(config.rms_norm_eps, 1e-5);
}

TEST(HfConfig, DefaultsAndC3) {
    nlohmann::json json = {{"model_type", "C3"}, {"vocab_size", 100},  {"hidden_size", 64},
                           {"intermediate_size", 96}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                           {"latent_token_len", 32}, {"eos_token_id", nullptr}};
    const TransformerConfig config = parse_hf_config(json, "c3.json");
    EXPECT_EQ(config.model_type, "qwen2");  // C3's decoder is a Qwen2
    EXPECT_EQ(config.num_kv_heads, 4u);
    EXPECT_EQ(config.head_dim, 16u);
    EXPECT_EQ(config.rope_theta, 10000.0);
    EXPECT_FALSE(config.tie_word_embeddings);
    EXPECT_TRUE(config.attention_bias);
    EXPECT_EQ(config.bos_token_id, -1);
    EXPECT_EQ(config.eos_token_id, -1);

    json["model_type"] = "llama";
    json["head_dim"] = 32;
    json["attention_bias"] = true;
    json["rope_parameters"] = {{"rope_type", "default"}};
    json["rope_theta"] = 5e5;
    const TransformerConfig llama = parse_hf_config(json, "c3.json");
    EXPECT_EQ(llama.head_dim, 32u);
    EXPECT_TRUE(llama.attention_bias);
    EXPECT_EQ(llama.rope_theta, 5e5);
    json["rope_parameters"]["rope_theta"] = 2e4;  // rope_parameters wins, as in transformers 5
    EXPECT_EQ(parse_hf_config(json, "c3.json").rope_theta, 2e4);
}

TEST(HfConfig, ErrorsNameTheKeyAndFile) {
    auto error_for = [](nlohmann::json json) {
        return expect_error<ConfigError>([&] { parse_hf_config(json, "some/config.json"); });
    };
    nlohmann::json json = qwen2_transformers5();
    json.erase("vocab_size");
    std::string message = error_for(json);
    EXPECT_NE(message.find("vocab_size"), std::string::npos) << message;
    EXPECT_NE(message.find("some/config.json"), std::string::npos) << message;

    json = qwen2_transformers5();
    json["hidden_size"] = "1536";
    EXPECT_NE(error_for(json).find("hidden_size"), std::string::npos);
    json = qwen2_transformers5();
    json["num_hidden_layers"] = -3;
    EXPECT_NE(error_for(json).find("num_hidden_layers"), std::string::npos);
    json = qwen2_transformers5();
    json["tie_word_embeddings"] = 1;
    EXPECT_NE(error_for(json).find("tie_word_embeddings"), std::string::npos);
    json = qwen2_transformers5();
    json["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 5e5}, {"factor", 8.0}};
    EXPECT_NE(error_for(json).find("rope scaling type llama3 is not supported"), std::string::npos);
    json = llama_transformers4();
    json["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    EXPECT_NE(error_for(json).find("rope scaling type linear is not supported"), std::string::npos);
    json = qwen2_transformers5();
    json["model_type"] = "mistral";
    EXPECT_NE(error_for(json).find("mistral"), std::string::npos);
    json.erase("model_type");
    EXPECT_NE(error_for(json).find("model_type"), std::string::npos);
    json = qwen2_transformers5();
    json["hidden_act"] = "gelu";
    EXPECT_NE(error_for(json).find("gelu"), std::string::npos);
    json = qwen2_transformers5();
    json["layer_types"] = {"sliding_attention"};
    EXPECT_NE(error_for(json).find("sliding_attention"), std::string::npos);
    json = qwen2_transformers5();
    json["num_key_value_heads"] = 5;  // 12 heads are not a multiple of 5: validate() catches it
    EXPECT_NE(error_for(json).find("some/config.json"), std::string::npos);
    json = qwen2_transformers5();
    json.erase("head_dim");
    json["hidden_size"] = 1000;  // not a multiple of 12 heads and no head_dim
    EXPECT_NE(error_for(json).find("head_dim"), std::string::npos);
    EXPECT_THROW(parse_hf_config(nlohmann::json::array(), "x"), FormatError);
}

TEST(HfConfig, FilesRoundTrip) {
    TempDir directory;
    TransformerConfig config;
    config.model_type = "llama";
    config.attention_bias = false;
    config.rope_theta = 5e5;
    config.eos_token_id = 2;
    write_hf_config(config, directory.path());
    const TransformerConfig read = read_hf_config(directory.path());
    EXPECT_EQ(read.model_type, "llama");
    EXPECT_EQ(read.rope_theta, 5e5);
    EXPECT_EQ(read.eos_token_id, 2);
    EXPECT_EQ(read.bos_token_id, -1);
    EXPECT_EQ(read.head_dim, config.head_dim);
    EXPECT_EQ(read.num_kv_heads, config.num_kv_heads);
    EXPECT_FALSE(read.attention_bias);
    EXPECT_EQ(read_hf_config(directory.file("config.json")).hidden_size, config.hidden_size);

    TransformerConfig qwen;  // the defaults are a qwen2 with bias
    const nlohmann::json json = to_hf_config(qwen);
    EXPECT_EQ(json["architectures"][0], "Qwen2ForCausalLM");
    EXPECT_EQ(json["rope_parameters"]["rope_theta"], qwen.rope_theta);
    EXPECT_EQ(json["use_sliding_window"], false);
    qwen.attention_bias = false;
    EXPECT_THROW(to_hf_config(qwen), ConfigError);

    write_bytes(directory.file("config.json"), "{\"model_type\": ");
    EXPECT_THROW(read_hf_config(directory.path()), FormatError);
    EXPECT_THROW(read_hf_config(directory.file("absent.json")), IOError);
}

}  // namespace
