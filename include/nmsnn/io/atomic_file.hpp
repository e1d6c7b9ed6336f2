// nmsnn/io/atomic_file.hpp — write_file_atomically: a file written so that a crash never
// leaves it half-written (see nmsnn/io/files.hpp, where it lives with the input checks).
#pragma once

#include "nmsnn/io/files.hpp"
