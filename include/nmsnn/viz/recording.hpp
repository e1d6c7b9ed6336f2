// nmsnn/viz/recording.hpp — what every neuron of a trained spiking network does, step by step,
// on one sample: pynmsnn's forward_through_time lists (the emitted inner state and output of
// each layer at each step) plus firing rates per neuron and per layer.
//
// The recording replays the network's forward pass for one row of X with the same random input
// masks as predict(X) (the masks are keyed by the row's index), so the readout it reports equals
// decision_function(X) for that row, up to float rounding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "nmsnn/core/config.hpp"
#include "nmsnn/core/errors.hpp"
#include "nmsnn/network/spiking_network.hpp"

namespace nmsnn {

/// One layer's activity on one sample. Column t is what the layer emits at step t, i.e. its
/// inner state v and output o after step t - 1 (zeros at t = 0), as in MODEL.md.
struct LayerRecording {
  Eigen::MatrixXd state;         ///< neurons x T: emitted inner state
  Eigen::MatrixXd output;        ///< neurons x T: emitted output (relu(u - threshold))
  Eigen::VectorXd firing_rate;   ///< per neuron: fraction of steps with output > 0
  double mean_firing_rate = 0;   ///< over the layer's neurons and steps
};

struct Recording {
  Index sample = 0;                   ///< the row of X that was recorded
  Index time_steps = 0, begin_eval = 0;
  std::vector<LayerRecording> layers;  ///< in network order; the last is the output layer
  Eigen::VectorXd readout;             ///< the reduced last-layer state (decision_function's row)
};

/// Records the activity of every layer on row `row` of X (rows are samples).
template <class Task, class Scalar, class DX>
Recording record_activity(const SpikingNetwork<Task, Scalar>& net, const Eigen::MatrixBase<DX>& X, Index row) {
  if (X.cols() != net.inputs())
    detail::raise<ShapeError>("record_activity: X has ", X.cols(), " features, the network takes ", net.inputs());
  if (row < 0 || row >= X.rows())
    detail::raise<ValueError>("record_activity: row ", row, " is outside 0..", X.rows() - 1);
  if (!X.row(row).allFinite()) detail::raise<ValueError>("record_activity: row ", row, " holds non-finite values");
  const Index T = net.time_steps();
  Recording rec;
  rec.sample = row;
  rec.time_steps = T;
  rec.begin_eval = net.begin_eval();

  // Layer 1's input for every step, with predict()'s draws: sample id = row, predict stream.
  const Matrix<Scalar> x = X.row(row).transpose().template cast<Scalar>();
  const std::uint32_t id = std::uint32_t(row);
  Matrix<Scalar> input(net.inputs(), T);
  net.encoder().encode(x, &id, DrawKey{net.seed(), SpikingNetwork<Task, Scalar>::predict_stream}, 0, T, input);

  for (Index l = 0; l < net.num_layers(); ++l) {
    const auto& layer = net.layer(l);
    const auto& nr = layer.neuron();
    // Currents a_t = W s_t + b; layer l >= 2 reads at step t what layer l - 1 emitted.
    Matrix<Scalar> A = layer.weights() * input;
    A.colwise() += layer.bias();
    const Index n = layer.outputs();
    LayerRecording L;
    L.state = Eigen::MatrixXd::Zero(n, T);
    L.output = Eigen::MatrixXd::Zero(n, T);
    const Scalar decay = Scalar(nr.decay), theta = Scalar(nr.threshold), rho = Scalar(nr.penalty);
    const Scalar kappa = rho / theta;
    Matrix<Scalar> emitted = Matrix<Scalar>::Zero(n, T);
    for (Index i = 0; i < n; ++i) {
      Scalar v = 0;
      for (Index t = 0; t < T; ++t) {
        const Scalar u = A(i, t) + v * decay;
        const Scalar g = static_cast<Scalar>(u > theta);
        const Scalar o = (u - theta) * g;
        v = nr.reset == Reset::scale ? u - (kappa * u) * g : u - (rho + o) * g;
        if (t + 1 < T) {
          L.state(i, t + 1) = double(v);
          L.output(i, t + 1) = double(o);
          emitted(i, t + 1) = o;
        }
      }
    }
    L.firing_rate = (L.output.array() > 0).cast<double>().rowwise().mean();
    L.mean_firing_rate = L.firing_rate.mean();
    rec.layers.push_back(std::move(L));
    input = std::move(emitted);
  }
  // The readout reduces the last layer's emitted state over steps begin_eval .. T-1.
  const auto& last = rec.layers.back().state;
  const Index e = net.begin_eval();
  rec.readout = last.middleCols(e, T - e).rowwise().sum();
  if (net.readout().kind() == Readout::mean) rec.readout /= double(T - e);
  return rec;
}

}  // namespace nmsnn
