// Shared plumbing of the command-line tools, one piece a file: arguments (args.h), progress
// and signals (progress.h), outputs (output.h), images as tensors (image_tensor.h).
#pragma once

#include "args.h"
#include "image_tensor.h"
#include "output.h"
#include "progress.h"
