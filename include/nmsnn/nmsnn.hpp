// nmsnn — neuromorphic predictive models: spiking neural networks for binary and multiclass
// classification and regression, trained with hand-written backprop through time.
// The umbrella header: include this one.
#pragma once

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/core/random.hpp"
#include "nmsnn/encoders/input_encoder.hpp"
#include "nmsnn/layers/spiking_layer.hpp"
#include "nmsnn/readout/output_reducer.hpp"
#include "nmsnn/tasks/tasks.hpp"
#include "nmsnn/optim/optimizers.hpp"
#include "nmsnn/train/fit_options.hpp"
#include "nmsnn/train/trainer.hpp"
#include "nmsnn/network/spiking_network.hpp"
#include "nmsnn/network/dense_network.hpp"
#include "nmsnn/data/csv.hpp"
#include "nmsnn/data/idx.hpp"
#include "nmsnn/data/synthetic.hpp"
#include "nmsnn/io/atomic_file.hpp"
#include "nmsnn/metrics/metrics.hpp"
#include "nmsnn/preprocessing/preprocessing.hpp"
#include "nmsnn/io/model_file.hpp"
#include "nmsnn/viz/svg.hpp"
#include "nmsnn/viz/recording.hpp"
#include "nmsnn/viz/plots.hpp"
#include "nmsnn/viz/report.hpp"
