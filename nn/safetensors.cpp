#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "nn/file_io.h"
#include "nn/json_input.h"

namespace vq::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

std::string safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Float16: return "F16";
    case DType::BFloat16: return "BF16";
    case DType::Int64: return "I64";
    case DType::UInt8: return "U8";
  }
  return "?";
}

namespace {

// A dtype as a file stores it: its name, the tensor dtype it loads into, the bytes per element.
struct Stored {
  const char* name;
  DType dtype;
  uint64_t size;
};
constexpr Stored kStored[] = {{"F32", DType::Float32, 4}, {"F64", DType::Float64, 8},
                              {"F16", DType::Float16, 2}, {"BF16", DType::BFloat16, 2},
                              {"I64", DType::Int64, 8},   {"U8", DType::UInt8, 1},
                              {"I32", DType::Int64, 4},   {"I16", DType::Int64, 2}};

const Stored& stored_type(const std::string& name, const std::string& source) {
  for (const Stored& s : kStored) {
    if (name == s.name) return s;
  }
  throw Error(
      fmt::format("{}: unsupported dtype '{}' (supported: F32, F64, F16, BF16, I64, U8, I32, I16)",
                  source, name));
}

// The int64 values of t stored as little-endian integers of `size` bytes (2 or 4), refused with
// the name when one does not fit.
std::string narrow_bytes(const std::string& name, const Tensor& t, const Stored& to) {
  VQ_CHECK(t.dtype() == DType::Int64, "safetensors: tensor '{}' is {}; only int64 is stored as {}",
           name, dtype_name(t.dtype()), to.name);
  const int64_t limit = int64_t{1} << (8 * to.size - 1);
  const int64_t* v = t.data<int64_t>();
  std::string out(static_cast<size_t>(t.numel()) * to.size, '\0');
  for (int64_t i = 0; i < t.numel(); ++i) {
    VQ_CHECK(v[i] >= -limit && v[i] < limit, "safetensors: tensor '{}' holds {}, which {} cannot",
             name, v[i], to.name);
    if (to.size == 2) {
      const auto x = static_cast<int16_t>(v[i]);
      std::memcpy(out.data() + i * 2, &x, 2);
    } else {
      const auto x = static_cast<int32_t>(v[i]);
      std::memcpy(out.data() + i * 4, &x, 4);
    }
  }
  return out;
}

// A tensor of the entry's shape and dtype from its bytes, widening I32 and I16 to int64.
Tensor tensor_from_bytes(const SafetensorsEntry& e, const char* bytes) {
  Tensor t = Tensor::empty(e.shape, e.dtype);
  if (e.stored != "I16" && e.stored != "I32") {
    std::memcpy(t.raw_data(), bytes, e.end - e.begin);
    return t;
  }
  int64_t* out = t.data<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (e.stored == "I16") {
      int16_t x;
      std::memcpy(&x, bytes + i * 2, 2);
      out[i] = x;
    } else {
      int32_t x;
      std::memcpy(&x, bytes + i * 4, 4);
      out[i] = x;
    }
  }
  return t;
}

}  // namespace

std::string safetensors_bytes(const NamedTensors& tensors, const Metadata& metadata,
                              const Narrowed& narrowed) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const auto& [name, as] : narrowed) {
    VQ_CHECK(as == "I32" || as == "I16", "safetensors: tensor '{}' cannot be narrowed to '{}'",
             name, as);
  }
  auto stored = [&](const std::string& name, const Tensor& t) -> const Stored& {
    const auto it = narrowed.find(name);
    return stored_type(it != narrowed.end() ? it->second : safetensors_dtype(t.dtype()), name);
  };
  // Wider dtypes first (stable otherwise), so with the 8-aligned data start every tensor is
  // aligned to its element size, as Python's safetensors also arranges.
  NamedTensors ordered = tensors;
  std::stable_sort(ordered.begin(), ordered.end(), [&](const auto& a, const auto& b) {
    return stored(a.first, a.second).size > stored(b.first, b.second).size;
  });
  std::set<std::string> names;
  // Each tensor's data: the tensor itself (copied once, into the result), or its narrowed bytes.
  struct Part {
    Tensor host;
    std::string narrow;
  };
  std::vector<Part> parts;
  uint64_t offset = 0;
  for (const auto& [name, t] : ordered) {
    VQ_CHECK(name != "__metadata__" && names.insert(name).second,
             "safetensors: the name '{}' is used twice or reserved", name);
    VQ_CHECK(t.defined(), "safetensors: tensor '{}' is undefined", name);
    const Tensor host = t.detach().to(kCPU).contiguous();
    const Stored& as = stored(name, t);
    const bool own_dtype = as.name == safetensors_dtype(host.dtype());
    parts.push_back({host, own_dtype ? std::string() : narrow_bytes(name, host, as)});
    const uint64_t nbytes =
        own_dtype ? host.numel() * dtype_size(host.dtype()) : parts.back().narrow.size();
    header[name] = {
        {"dtype", as.name}, {"shape", t.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  out += json;
  out.reserve(out.size() + offset);
  for (const Part& p : parts) {
    if (p.narrow.empty()) {
      out.append(static_cast<const char*>(p.host.raw_data()),
                 p.host.numel() * dtype_size(p.host.dtype()));
    } else {
      out += p.narrow;
    }
  }
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata, const Narrowed& narrowed) {
  write_file_atomically(path, safetensors_bytes(tensors, metadata, narrowed));
}

namespace {

using Entry = SafetensorsEntry;

Entry parse_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                  const std::string& src) {
  VQ_CHECK(v.is_object(), "{}: entry '{}' is not a JSON object", src, name);
  VQ_CHECK(v.contains("dtype") && v["dtype"].is_string(), "{}: entry '{}' has no string 'dtype'",
           src, name);
  VQ_CHECK(v.contains("shape") && v["shape"].is_array(), "{}: entry '{}' has no 'shape' array", src,
           name);
  VQ_CHECK(
      v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
      "{}: entry '{}' needs 'data_offsets' as [begin, end]", src, name);
  const Stored& as = stored_type(v["dtype"].get<std::string>(), src + ": entry '" + name + "'");
  Entry e{name, as.dtype, {}, 0, 0, as.name};
  // The element count is checked against the data section before anything is allocated, so it
  // must not overflow on the way: every dimension is at most the section's size, and the running
  // product stops at the first value beyond it.
  uint64_t numel = 1;
  for (const auto& d : v["shape"]) {
    VQ_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= std::max<uint64_t>(data_size, 1),
             "{}: entry '{}' has a shape entry that is not a non-negative integer of at most the "
             "data section's {} bytes: {}",
             src, name, data_size, d.dump());
    e.shape.push_back(d.get<int64_t>());
    const uint64_t dim = d.get<uint64_t>();
    numel = dim != 0 && numel > data_size / dim ? data_size + 1 : numel * dim;
  }
  for (const auto& o : v["data_offsets"]) {
    VQ_CHECK(o.is_number_unsigned(),
             "{}: entry '{}' has a data offset that is not a non-negative integer: {}", src, name,
             o.dump());
  }
  e.begin = v["data_offsets"][0].get<uint64_t>();
  e.end = v["data_offsets"][1].get<uint64_t>();
  VQ_CHECK(e.begin <= e.end && e.end <= data_size,
           "{}: entry '{}' has data_offsets [{}, {}] outside the data section of {} bytes "
           "(truncated file?)",
           src, name, e.begin, e.end, data_size);
  const uint64_t expected = numel * as.size;
  VQ_CHECK(e.end - e.begin == expected,
           "{}: entry '{}' has shape {} of {} ({} bytes) but its data range holds {} bytes", src,
           name, shape_str(e.shape), v["dtype"].get<std::string>(), expected, e.end - e.begin);
  VQ_CHECK(e.begin % as.size == 0, "{}: entry '{}' starts at byte {}, misaligned for {}", src, name,
           e.begin, v["dtype"].get<std::string>());
  return e;
}

}  // namespace

uint64_t SafetensorsIndex::data_bytes() const { return entries.empty() ? 0 : entries.back().end; }

SafetensorsIndex parse_safetensors_index(std::string_view head, uint64_t file_size,
                                         const std::string& src) {
  VQ_CHECK(file_size >= 8 && head.size() >= 8,
           "{}: truncated: {} bytes, but a safetensors file starts with an 8-byte header length",
           src, file_size);
  uint64_t n = 0;
  std::memcpy(&n, head.data(), 8);
  VQ_CHECK(n <= kMaxSafetensorsHeaderBytes,
           "{}: the header length {} is above the limit of {} bytes (kMaxSafetensorsHeaderBytes): "
           "not a safetensors file, or a corrupt one",
           src, n, kMaxSafetensorsHeaderBytes);
  VQ_CHECK(n <= file_size - 8,
           "{}: the header length {} is larger than the {} bytes that follow it (truncated, or not "
           "a safetensors file)",
           src, n, file_size - 8);
  VQ_CHECK(head.size() >= 8 + n, "{}: {} bytes given for a header of {}", src, head.size(), 8 + n);

  const nlohmann::json header = parse_json_input(head.substr(8, n), src + " (header)");
  VQ_CHECK(header.is_object(), "{}: the header is not a JSON object", src);

  const uint64_t data_size = file_size - 8 - n;
  SafetensorsIndex index;
  index.data_start = 8 + n;
  std::vector<Entry>& entries = index.entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      VQ_CHECK(value.is_object(), "{}: __metadata__ is not a JSON object", src);
      for (const auto& [k, v] : value.items()) {
        VQ_CHECK(v.is_string(), "{}: __metadata__ value of '{}' is not a string", src, k);
        index.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(name, value, data_size, src));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    VQ_CHECK(e.begin >= covered, "{}: entries '{}' and '{}' overlap (bytes [{}, {}) and [{}, {}))",
             src, previous ? previous->name : "", e.name, previous ? previous->begin : 0, covered,
             e.begin, e.end);
    VQ_CHECK(e.begin == covered, "{}: bytes [{}, {}) before entry '{}' belong to no tensor", src,
             covered, e.begin, e.name);
    covered = e.end;
    previous = &e;
  }
  VQ_CHECK(covered == data_size, "{}: {} trailing bytes after the last tensor belong to no tensor",
           src, data_size - covered);
  return index;
}

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& src) {
  const SafetensorsIndex index = parse_safetensors_index(bytes, bytes.size(), src);
  SafetensorsFile file;
  file.metadata = index.metadata;
  const char* data = bytes.data() + index.data_start;
  for (const Entry& e : index.entries)
    file.tensors.emplace_back(e.name, tensor_from_bytes(e, data + e.begin));
  return file;
}

std::string describe_safetensors(const SafetensorsIndex& file, bool list_tensors) {
  size_t width = 4;
  int64_t elements = 0, bytes = 0;
  auto numel = [](const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  };
  for (const Entry& e : file.entries) {
    width = std::max(width, e.name.size());
    elements += numel(e.shape);
    bytes += static_cast<int64_t>(e.end - e.begin);
  }
  std::string out;
  if (list_tensors) {
    out += fmt::format("{:<{}}  {:<5} {:<20} {:>12}\n", "name", width, "dtype", "shape", "bytes");
    for (const Entry& e : file.entries) {
      out += fmt::format("{:<{}}  {:<5} {:<20} {:>12}\n", e.name, width, e.stored,
                         shape_str(e.shape), e.end - e.begin);
    }
  }
  out += fmt::format("{} tensors, {} elements, {:.2f} MiB\n", file.entries.size(), elements,
                     bytes / 1048576.0);
  if (!file.metadata.empty()) {
    out += "metadata:\n";
    for (const auto& [k, v] : file.metadata) {
      std::string value = v;
      try {  // pretty-print JSON values
        const auto parsed = parse_json_input(v, "metadata");
        if (parsed.is_object()) value = parsed.dump(2);
      } catch (const Error&) {
      }
      for (size_t pos = 0; (pos = value.find('\n', pos)) != std::string::npos; pos += 5)
        value.replace(pos, 1, "\n    ");
      out += fmt::format("  {}: {}\n", k, value);
    }
  }
  return out;
}

namespace {

// The header of an open file: 8 bytes, then as many as a length the parser will accept (it
// refuses the others with the reason).
SafetensorsIndex index_of(const FileReader& file, const std::string& path) {
  std::string head = file.read_at(0, std::min<uint64_t>(8, file.size()));
  if (head.size() == 8) {
    uint64_t n = 0;
    std::memcpy(&n, head.data(), 8);
    if (n <= kMaxSafetensorsHeaderBytes && n <= file.size() - 8) head += file.read_at(8, n);
  }
  return parse_safetensors_index(head, file.size(), path);
}

}  // namespace

SafetensorsIndex read_safetensors_index(const std::string& path) {
  return index_of(FileReader(path, kMaxSafetensorsFileBytes, "safetensors file"), path);
}

SafetensorsFile load_safetensors(const std::string& path,
                                 const std::function<bool(const std::string&)>& keep) {
  const FileReader reader(path, kMaxSafetensorsFileBytes, "safetensors file");
  const SafetensorsIndex index = index_of(reader, path);
  SafetensorsFile file;
  file.metadata = index.metadata;
  for (const Entry& e : index.entries) {
    if (keep && !keep(e.name)) continue;
    if (e.stored != "I16" && e.stored != "I32") {
      Tensor t = Tensor::empty(e.shape, e.dtype);  // straight into the tensor
      reader.read_at(index.data_start + e.begin, e.end - e.begin, t.raw_data());
      file.tensors.emplace_back(e.name, t);
    } else {
      const std::string bytes = reader.read_at(index.data_start + e.begin, e.end - e.begin);
      file.tensors.emplace_back(e.name, tensor_from_bytes(e, bytes.data()));
    }
  }
  return file;
}

}  // namespace vq::nn
