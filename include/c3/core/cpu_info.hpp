// What the CPU running the program reports: its data-cache sizes and the widest vectors it executes, read once.
// The kernels derive their cache blocking from these sizes (register tiles stay compile-time constants: they
// follow from the register file, not from the caches), so one binary blocks for the machine it runs on.
//
// Cache sizes come from Linux's sysfs (/sys/devices/system/cpu/cpu0/cache/index*/size: the size of one instance,
// the part a core sees), else sysconf(_SC_LEVEL1_DCACHE_SIZE, ...), else cpuid leaf 4 (Intel) or 0x8000001D
// (AMD), else a default (32 KiB, 1 MiB, 32 MiB). sysfs goes first because glibc's sysconf reports the L3 of a
// whole package on some AMD machines (320 MiB where sysfs says 32 MiB). The environment variable C3_CACHE_SIZES
// ("l1d=32K,l2=1M,l3=32M", any subset) and set_cache_sizes() replace what was read: tests run the kernels with
// forced sizes through them.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "c3/core/errors.hpp"

namespace c3 {

struct CacheSizes {
    size_t l1d = 0, l2 = 0, l3 = 0;  // bytes; 0 = unknown (only inside detection)
};

struct CpuInfo {
    CacheSizes cache;
    std::string cache_source;  // "sysfs", "sysconf", "cpuid", "default", then "+C3_CACHE_SIZES" or "set"
    size_t vector_bits = 128;  // the widest vectors the CPU executes: 512 (AVX-512F), 256 (AVX2), else 128
};

namespace detail {

inline size_t parse_size(const std::string& text) {  // "32K", "1024K", "1M", "32768"; 0 if malformed
    size_t digits = 0, value = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        value = value * 10 + size_t(text[digits++] - '0');
    if (digits == 0) return 0;
    const std::string unit = text.substr(digits);
    if (unit.empty() || unit == "\n") return value;
    const char letter = char(unit[0] & ~0x20);  // upper case
    const size_t shift = letter == 'K' ? 10 : letter == 'M' ? 20 : letter == 'G' ? 30 : 64;
    return shift == 64 ? 0 : value << shift;
}

inline CacheSizes caches_from_sysfs() {
    CacheSizes sizes;
    for (int index = 0; index < 8; ++index) {
        const std::string directory = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
        std::ifstream level_file(directory + "level"), type_file(directory + "type"), size_file(directory + "size");
        int level = 0;
        std::string type, size;
        if (!(level_file >> level) || !(type_file >> type) || !(size_file >> size)) continue;
        const size_t bytes = parse_size(size);
        if (level == 1 && type == "Data") sizes.l1d = bytes;
        else if (level == 2 && type != "Instruction") sizes.l2 = bytes;
        else if (level == 3 && type != "Instruction") sizes.l3 = bytes;
    }
    return sizes;
}

inline CacheSizes caches_from_sysconf() {
    CacheSizes sizes;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    auto read = [](int name) { const long value = sysconf(name); return value > 0 ? size_t(value) : size_t(0); };
    sizes = {read(_SC_LEVEL1_DCACHE_SIZE), read(_SC_LEVEL2_CACHE_SIZE), read(_SC_LEVEL3_CACHE_SIZE)};
#endif
    return sizes;
}

inline CacheSizes caches_from_cpuid() {
    CacheSizes sizes;
#if defined(__x86_64__) || defined(__i386__)
    // Deterministic cache parameters: leaf 4 (Intel), 0x8000001D (AMD); same layout. Size = ways * partitions *
    // line size * sets.
    for (unsigned leaf : {4u, 0x8000001Du}) {
        unsigned maximum = __get_cpuid_max(leaf & 0x80000000u, nullptr);
        if (maximum < leaf) continue;
        for (unsigned subleaf = 0; subleaf < 8; ++subleaf) {
            unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
            __cpuid_count(leaf, subleaf, eax, ebx, ecx, edx);
            const unsigned type = eax & 0x1f;  // 0 none, 1 data, 2 instruction, 3 unified
            if (type == 0) break;
            const unsigned level = (eax >> 5) & 0x7;
            const size_t ways = (ebx >> 22) + 1, partitions = ((ebx >> 12) & 0x3ff) + 1, line = (ebx & 0xfff) + 1;
            const size_t bytes = ways * partitions * line * (size_t(ecx) + 1);
            if (level == 1 && type == 1) sizes.l1d = bytes;
            else if (level == 2 && type != 2) sizes.l2 = bytes;
            else if (level == 3 && type != 2) sizes.l3 = bytes;
        }
        if (sizes.l1d && sizes.l2) break;
    }
#endif
    return sizes;
}

// "l1d=32K,l2=1M,l3=32M" (any subset, any order) over `sizes`; a typed error names what is wrong.
inline CacheSizes apply_cache_override(CacheSizes sizes, const std::string& text) {
    size_t begin = 0;
    while (begin < text.size()) {
        size_t end = text.find(',', begin);
        if (end == std::string::npos) end = text.size();
        const std::string item = text.substr(begin, end - begin);
        const size_t equals = item.find('=');
        const std::string key = item.substr(0, equals);
        const size_t bytes = equals == std::string::npos ? 0 : parse_size(item.substr(equals + 1));
        if (bytes == 0 || (key != "l1d" && key != "l2" && key != "l3"))
            throw ConfigError("C3_CACHE_SIZES: expected items like l1d=32K, l2=1M, l3=32M; got '" + item + "'");
        (key == "l1d" ? sizes.l1d : key == "l2" ? sizes.l2 : sizes.l3) = bytes;
        begin = end + 1;
    }
    return sizes;
}

inline CpuInfo detect_cpu() {
    CpuInfo info;
    const CacheSizes defaults{32 << 10, 1 << 20, 32 << 20};
    const std::pair<const char*, CacheSizes (*)()> sources[] = {
        {"sysfs", caches_from_sysfs}, {"sysconf", caches_from_sysconf}, {"cpuid", caches_from_cpuid}};
    info.cache_source = "default";
    for (const auto& [name, read] : sources) {
        const CacheSizes sizes = read();
        if (sizes.l1d && sizes.l2) {
            info.cache = sizes;
            info.cache_source = name;
            break;
        }
    }
    if (!info.cache.l1d) info.cache = defaults;
    if (!info.cache.l3) info.cache.l3 = info.cache.l2;  // no L3: the L2 is the last level
    if (const char* text = std::getenv("C3_CACHE_SIZES"); text && *text) {
        info.cache = apply_cache_override(info.cache, text);
        info.cache_source += "+C3_CACHE_SIZES";
    }
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    info.vector_bits = __builtin_cpu_supports("avx512f") ? 512 : __builtin_cpu_supports("avx2") ? 256 : 128;
#endif
    return info;
}

inline CpuInfo& mutable_cpu_info() {
    static CpuInfo info = detect_cpu();
    return info;
}

}  // namespace detail

// The CPU's caches and vector width, detected on first use.
inline const CpuInfo& cpu_info() { return detail::mutable_cpu_info(); }

// Replaces the cache sizes the kernels block for (0 keeps a size). For tests and experiments: call it while no
// kernel runs. Sizes change the blocking, so sums may round differently, never the result's meaning.
inline void set_cache_sizes(const CacheSizes& sizes) {
    CpuInfo& info = detail::mutable_cpu_info();
    if (sizes.l1d) info.cache.l1d = sizes.l1d;
    if (sizes.l2) info.cache.l2 = sizes.l2;
    if (sizes.l3) info.cache.l3 = sizes.l3;
    if (info.cache_source.find("+set") == std::string::npos) info.cache_source += "+set";
}

}  // namespace c3
