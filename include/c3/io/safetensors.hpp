// Everything safetensors in one include: SafetensorsFile (safetensors_reader.hpp), write_safetensors
// (safetensors_writer.hpp), and ShardedSafetensorsReader and write_sharded for model directories
// (sharded_safetensors.hpp). Headers in c3 include the part they use.
#pragma once
#include "c3/io/safetensors_reader.hpp"
#include "c3/io/safetensors_writer.hpp"
#include "c3/io/sharded_safetensors.hpp"
