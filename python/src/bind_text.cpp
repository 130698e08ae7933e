// c3._core.ByteTokenizer and BpeTokenizer: ids come out as int32 NumPy arrays without a copy.
#include "bindings.hpp"
#include "c3/text/bpe.hpp"
#include "c3/text/byte_tokenizer.hpp"

namespace c3::python {
namespace {

std::vector<int32_t> ids_from_object(const py::object& object) {
    auto array = Array<int64_t>::ensure(object);
    C3_CHECK(array && array.ndim() == 1, ValueError, "token ids must be a 1-d integer sequence");
    std::vector<int32_t> ids(size_t(array.size()));
    for (size_t i = 0; i < ids.size(); ++i) {
        C3_CHECK(array.data()[i] >= 0 && array.data()[i] < (int64_t(1) << 31), TokenizerError, "token id ",
                 array.data()[i], " is not a valid id");
        ids[i] = int32_t(array.data()[i]);
    }
    return ids;
}

py::array_t<int32_t> ids_to_array(std::vector<int32_t>&& ids) {
    const size_t count = ids.size();
    return move_to_array(std::move(ids), {count});
}

// Text for a tokenizer that normalises to NFC: Python's unicodedata does the normalisation.
std::string prepared(const text::BpeTokenizer& tokenizer, const py::str& text) {
    if (!tokenizer.needs_nfc()) return utf8_from_python(text, "text");
    utf8_from_python(text, "text");  // a lone surrogate is refused before normalisation
    return utf8_from_python(py::module_::import("unicodedata").attr("normalize")("NFC", text), "text");
}

template <typename Tokenizer, typename Prepare>
void bind_common(py::class_<Tokenizer>& cls, Prepare prepare) {
    cls.def("encode",
            [prepare](const Tokenizer& self, const py::str& text) {
                std::string input = prepare(self, text);
                std::vector<int32_t> ids;
                {
                    py::gil_scoped_release release;
                    ids = self.encode(input);
                }
                return ids_to_array(std::move(ids));
            },
            py::arg("text"), "Text -> int32 token ids.")
        .def("encode_batch",
             [prepare](const Tokenizer& self, const std::vector<py::str>& texts) {
                 std::vector<std::string> inputs;
                 for (const auto& text : texts) inputs.push_back(prepare(self, text));
                 std::vector<std::vector<int32_t>> all(inputs.size());
                 {
                     py::gil_scoped_release release;
                     for (size_t i = 0; i < inputs.size(); ++i) all[i] = self.encode(inputs[i]);
                 }
                 py::list out;
                 for (auto& ids : all) out.append(ids_to_array(std::move(ids)));
                 return out;
             },
             py::arg("texts"))
        .def("decode",
             [](const Tokenizer& self, const py::object& ids, bool skip_special_tokens) {
                 const std::vector<int32_t> values = ids_from_object(ids);
                 std::string text;
                 {
                     py::gil_scoped_release release;
                     text = self.decode(values, skip_special_tokens);
                 }
                 return py::str(PyUnicode_DecodeUTF8(text.data(), py::ssize_t(text.size()), "replace"));
             },
             py::arg("ids"), py::arg("skip_special_tokens") = false)
        .def("decode_batch",
             [](const Tokenizer& self, const py::list& batch, bool skip_special_tokens) {
                 py::list out;
                 for (auto ids : batch) {
                     const std::string text = self.decode(ids_from_object(py::reinterpret_borrow<py::object>(ids)), skip_special_tokens);
                     out.append(py::str(PyUnicode_DecodeUTF8(text.data(), py::ssize_t(text.size()), "replace")));
                 }
                 return out;
             },
             py::arg("batch"), py::arg("skip_special_tokens") = false)
        .def("token_to_id", &Tokenizer::token_to_id, py::arg("token"))
        .def("id_to_token", &Tokenizer::id_to_token, py::arg("id"))
        .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
        .def_property_readonly("special_tokens", &Tokenizer::special_tokens);
}

}  // namespace

void bind_text(py::module_& m) {
    py::class_<text::ByteTokenizer> byte_tokenizer(m, "ByteTokenizer",
                                                   "Bytes 0..255, then named special tokens (<pad> <bos> <eos> <img> </img> <imgpad> by default).");
    byte_tokenizer.def(py::init([](std::optional<std::vector<std::string>> specials) {
                           return specials ? text::ByteTokenizer(*specials) : text::ByteTokenizer();
                       }),
                       py::arg("special_tokens") = py::none());
    bind_common(byte_tokenizer,
                [](const text::ByteTokenizer&, const py::str& text) { return utf8_from_python(text, "text"); });

    py::class_<text::BpeTokenizer> bpe(m, "BpeTokenizer", "Byte-level BPE from a Hugging Face tokenizer.json.");
    bpe.def_static("from_file", [](const std::string& path) {
           py::gil_scoped_release release;
           return text::BpeTokenizer::from_file(path);
       }, py::arg("path"))
        .def_static("from_json", [](const std::string& json) { return text::BpeTokenizer::from_json_string(json); },
                    py::arg("json"));
    bind_common(bpe, prepared);
}

}  // namespace c3::python
