// cublas_v2.h for the emulated module: see kernels/cuda/emu/emu.h.
#pragma once
#include "kernels/cuda/emu/emu.h"
