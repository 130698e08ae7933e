// SHA-256 (FIPS 180-4), for the checksums c3 writes into its files (latents, cascade identities). Small and
// dependency-free: the library is header-only and links no crypto library. Tested against Python's hashlib on the
// FIPS vectors and on random inputs of every length around the block boundaries.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace c3 {

class Sha256 {
public:
    using Digest = std::array<uint8_t, 32>;

    Sha256() { reset(); }

    void reset() {
        state_ = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                  0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
        buffered_ = 0;
        length_ = 0;
    }

    Sha256& update(const void* data, size_t size) {
        if (size == 0) return *this;  // data may then be null (an empty vector's), which memcpy may not be given
        const auto* bytes = static_cast<const uint8_t*>(data);
        length_ += uint64_t(size);
        if (buffered_) {  // fill the partial block first
            const size_t take = std::min(size, kBlock - buffered_);
            std::memcpy(buffer_.data() + buffered_, bytes, take);
            buffered_ += take, bytes += take, size -= take;
            if (buffered_ < kBlock) return *this;
            compress(buffer_.data());
            buffered_ = 0;
        }
        for (; size >= kBlock; bytes += kBlock, size -= kBlock) compress(bytes);
        std::memcpy(buffer_.data(), bytes, size);
        buffered_ = size;
        return *this;
    }
    Sha256& update(std::string_view text) { return update(text.data(), text.size()); }

    // The digest of everything given since construction or reset(); the object is then reset.
    Digest finish() {
        const uint64_t bits = length_ * 8;
        const uint8_t pad = 0x80;
        update(&pad, 1);
        const uint8_t zero = 0;
        while (buffered_ != kBlock - 8) update(&zero, 1);
        uint8_t length[8];
        for (int i = 0; i < 8; ++i) length[i] = uint8_t(bits >> (56 - 8 * i));
        update(length, 8);
        Digest digest;
        for (size_t i = 0; i < 8; ++i)
            for (size_t j = 0; j < 4; ++j) digest[4 * i + j] = uint8_t(state_[i] >> (24 - 8 * j));
        reset();
        return digest;
    }
    std::string finish_hex() { return hex(finish()); }

    static std::string hex(const Digest& digest) {
        static const char digits[] = "0123456789abcdef";
        std::string text;
        for (uint8_t byte : digest) text += digits[byte >> 4], text += digits[byte & 15];
        return text;
    }

private:
    static constexpr size_t kBlock = 64;
    std::array<uint32_t, 8> state_{};
    std::array<uint8_t, kBlock> buffer_{};
    size_t buffered_ = 0;
    uint64_t length_ = 0;

    static uint32_t rotate(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

    void compress(const uint8_t* block) {
        static constexpr uint32_t k[64] = {
            0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
            0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
            0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
            0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
            0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
            0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
            0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
            0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};
        uint32_t w[64];
        for (size_t i = 0; i < 16; ++i)
            w[i] = uint32_t(block[4 * i]) << 24 | uint32_t(block[4 * i + 1]) << 16 | uint32_t(block[4 * i + 2]) << 8 |
                   uint32_t(block[4 * i + 3]);
        for (size_t i = 16; i < 64; ++i) {
            const uint32_t s0 = rotate(w[i - 15], 7) ^ rotate(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const uint32_t s1 = rotate(w[i - 2], 17) ^ rotate(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
        uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
        for (size_t i = 0; i < 64; ++i) {
            const uint32_t t1 = h + (rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            const uint32_t t2 = (rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
        }
        state_[0] += a, state_[1] += b, state_[2] += c, state_[3] += d;
        state_[4] += e, state_[5] += f, state_[6] += g, state_[7] += h;
    }
};

// The hex SHA-256 of some bytes.
inline std::string sha256_hex(const void* data, size_t size) { return Sha256().update(data, size).finish_hex(); }

}  // namespace c3
