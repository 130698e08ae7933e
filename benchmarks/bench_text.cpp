// Google Benchmark: BPE encoding of one long word ("the" repeated, no space), where the merge loop's cost shows,
// against prose of the same length, and against the quadratic merge loop (merge_symbols_by_rescanning,
// the baseline BM_BpeMergeRescan). Near-linear: bytes/s falls only by the log factor as the word grows.
// Run: build/bench/benchmarks/bench_text --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "c3/text/bpe.hpp"

using namespace c3;

namespace {

// GPT-2's byte alphabet plus the merges t+h, th+e, Ġ+the, the+the, thethe+the: a long "thethe..." word merges
// at every level.
const text::BpeTokenizer& tokenizer() {
    static const text::BpeTokenizer instance = [] {
        nlohmann::json vocab = nlohmann::json::object();
        for (uint32_t b = 0; b < 256; ++b) {
            std::string symbol;
            text::append_utf8(symbol, text::byte_to_unicode()[b]);
            vocab[symbol] = b;
        }
        nlohmann::json merges = nlohmann::json::array();
        for (auto [left, right] : std::vector<std::pair<std::string, std::string>>{
                 {"t", "h"}, {"th", "e"}, {"\xC4\xA0", "the"}, {"the", "the"}, {"thethe", "the"}}) {
            if (!vocab.contains(left + right)) vocab[left + right] = vocab.size();
            merges.push_back(left + " " + right);
        }
        const nlohmann::json json = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
                                     {"pre_tokenizer", {{"type", "ByteLevel"}}}};
        return text::BpeTokenizer::from_json_string(json.dump());
    }();
    return instance;
}

std::string repeated(const std::string& piece, size_t bytes) {
    std::string text;
    while (text.size() < bytes) text += piece;
    return text;
}

std::vector<int32_t> byte_symbols(const std::string& word) {
    std::vector<int32_t> symbols;
    for (unsigned char byte : word) {
        std::string symbol;
        text::append_utf8(symbol, text::byte_to_unicode()[byte]);
        symbols.push_back(tokenizer().token_to_id(symbol));
    }
    return symbols;
}

}  // namespace

// Whole encode (pre-tokenizer and merges) of a fresh tokenizer each time: the word cache would hide the cost.
static void BM_BpeLongWord(benchmark::State& state) {
    const std::string text = repeated("the", size_t(state.range(0)));
    for (auto _ : state) {
        state.PauseTiming();
        text::BpeTokenizer fresh = tokenizer();  // copies start with an empty cache
        state.ResumeTiming();
        benchmark::DoNotOptimize(fresh.encode(text));
    }
    state.counters["bytes/s"] = benchmark::Counter(double(text.size()) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BpeLongWord)->RangeMultiplier(8)->Range(1 << 10, 1 << 20)->Unit(benchmark::kMillisecond);

static void BM_BpeProse(benchmark::State& state) {
    const std::string text = repeated("the theme of the thesis ", size_t(state.range(0)));
    for (auto _ : state) {
        state.PauseTiming();
        text::BpeTokenizer fresh = tokenizer();
        state.ResumeTiming();
        benchmark::DoNotOptimize(fresh.encode(text));
    }
    state.counters["bytes/s"] = benchmark::Counter(double(text.size()) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BpeProse)->RangeMultiplier(8)->Range(1 << 10, 1 << 20)->Unit(benchmark::kMillisecond);

// The merge loops alone on the same word: the heap (merge_symbols) and the rescanning baseline.
static void BM_BpeMergeHeap(benchmark::State& state) {
    const std::vector<int32_t> symbols = byte_symbols(repeated("the", size_t(state.range(0))));
    for (auto _ : state) {
        std::vector<int32_t> work = symbols;
        tokenizer().merge_symbols(work);
        benchmark::DoNotOptimize(work);
    }
    state.counters["bytes/s"] = benchmark::Counter(double(symbols.size()) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BpeMergeHeap)->RangeMultiplier(4)->Range(1 << 10, 1 << 16)->Unit(benchmark::kMillisecond);

static void BM_BpeMergeRescan(benchmark::State& state) {
    const std::vector<int32_t> symbols = byte_symbols(repeated("the", size_t(state.range(0))));
    for (auto _ : state) {
        std::vector<int32_t> work = symbols;
        tokenizer().merge_symbols_by_rescanning(work);
        benchmark::DoNotOptimize(work);
    }
    state.counters["bytes/s"] = benchmark::Counter(double(symbols.size()) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BpeMergeRescan)->RangeMultiplier(4)->Range(1 << 10, 1 << 16)->Unit(benchmark::kMillisecond);
