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

/// One layer's activity on one sample. Column t is what the layer emits at step t: for the
/// graded neuron its inner state v and output o after step t - 1 (zeros at t = 0), as in
/// MODEL.md; for the LIF family its membrane M_t and its spikes S_t (0 or 1) of step t itself.
struct LayerRecording {
  Eigen::MatrixXd state;         ///< neurons x T: emitted inner state (graded) or membrane (LIF)
  Eigen::MatrixXd output;        ///< neurons x T: emitted output (graded: relu(u - threshold); LIF: spikes)
  bool spikes = false;           ///< whether output holds binary spikes (a leaky or synaptic layer)
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
    const Index n = layer.outputs();
    LayerRecording L;
    if (nr.lif_family()) {
      // The LIF layer's own scan over all steps of this one sample (it adds the bias): spikes
      // into A, membranes into M; emitted at the step itself.
      Matrix<Scalar> M(n, T), m = Matrix<Scalar>::Zero(n, 1), j = Matrix<Scalar>::Zero(n, 1);
      layer.lif_scan_forward(A.data(), M.data(), nullptr, T, 1, m.data(), nr.model == NeuronModel::synaptic ? j.data() : nullptr);
      L.state = M.template cast<double>();
      L.output = A.template cast<double>();
      L.spikes = nr.emits_spikes();
    } else {
      A.colwise() += layer.bias();
      L.state = Eigen::MatrixXd::Zero(n, T);
      L.output = Eigen::MatrixXd::Zero(n, T);
      const Scalar decay = Scalar(nr.decay), theta = Scalar(nr.threshold), rho = Scalar(nr.penalty);
      // The engine's own step (a_t -> o_t in A's column, v_{t-1} -> v_t), one step at a time so
      // that every v_t is kept; emitted one step late.
      Matrix<Scalar> emitted = Matrix<Scalar>::Zero(n, T);
      Vector<Scalar> v = Vector<Scalar>::Zero(n);
      for (Index t = 0; t + 1 < T; ++t) {
        Scalar* a = A.col(t).data();
        if (nr.reset == Reset::scale)
          detail::forward_step<Scalar, Reset::scale, false, false>(a, nullptr, v.data(), nullptr, n, decay, theta, rho, rho / theta);
        else
          detail::forward_step<Scalar, Reset::subtract, false, false>(a, nullptr, v.data(), nullptr, n, decay, theta, rho, rho / theta);
        L.state.col(t + 1) = v.template cast<double>();
        L.output.col(t + 1) = A.col(t).template cast<double>();
        emitted.col(t + 1) = A.col(t);
      }
      A = std::move(emitted);  // what the next layer reads
    }
    L.firing_rate = (L.output.array() > 0).cast<double>().rowwise().mean();
    L.mean_firing_rate = L.firing_rate.mean();
    rec.layers.push_back(std::move(L));
    input = std::move(A);
  }
  // The readout reduces the last layer's emitted state (a LIF layer's spikes) over steps
  // begin_eval .. T-1.
  const auto& last = rec.layers.back().spikes ? rec.layers.back().output : rec.layers.back().state;
  const Index e = net.begin_eval();
  switch (net.readout().kind()) {
    case Readout::sum: rec.readout = last.middleCols(e, T - e).rowwise().sum(); break;
    case Readout::mean: rec.readout = last.middleCols(e, T - e).rowwise().sum() / double(T - e); break;
    case Readout::max: rec.readout = last.middleCols(e, T - e).rowwise().maxCoeff(); break;
    case Readout::last: rec.readout = last.col(T - 1); break;
  }
  return rec;
}

/// The work of one inference, per sample, averaged over the rows measured.
struct OperationCount {
  Index samples = 0;
  /// Synaptic operations the spiking network performs: for every step, every non-zero input
  /// of a layer times the layer's fan-out (zero inputs cost nothing in an event-driven
  /// implementation). `binary_ops` of them have a 0/1 input (Bernoulli input spikes) and are
  /// plain accumulates; the others carry a graded value and are multiply-accumulates.
  double synaptic_ops = 0, binary_ops = 0;
  /// The same network run densely: every weight used at every step.
  double dense_ops = 0;
};

/// Counts the synaptic operations of the network on up to max_samples rows of X (from row 0),
/// by recording each one.
template <class Task, class Scalar, class DX>
OperationCount count_operations(const SpikingNetwork<Task, Scalar>& net, const Eigen::MatrixBase<DX>& X,
                                Index max_samples = 200) {
  OperationCount c;
  const Index n = std::min<Index>(X.rows(), std::max<Index>(1, max_samples));
  const Index T = net.time_steps();
  for (Index r = 0; r < n; ++r) {
    const Recording rec = record_activity(net, X, r);
    // Layer 1 reads the encoded input: s_t = m_t x (rate, direct: non-zero where x is) or
    // Bernoulli spikes (expected count clamp(x, 0, 1) per step).
    const Index fan0 = net.layer(0).outputs();
    double in_ops = 0;
    for (Index f = 0; f < X.cols(); ++f) {
      const double x = double(X(r, f));
      if (net.encoder().kind() == Encoding::bernoulli) in_ops += std::clamp(x, 0.0, 1.0) * double(T);
      else if (x != 0) in_ops += double(T);
    }
    c.synaptic_ops += in_ops * double(fan0);
    if (net.encoder().kind() == Encoding::bernoulli) c.binary_ops += in_ops * double(fan0);
    for (Index l = 1; l < net.num_layers(); ++l)
      c.synaptic_ops += double((rec.layers[std::size_t(l - 1)].output.array() > 0).count()) * double(net.layer(l).outputs());
  }
  c.samples = n;
  c.synaptic_ops /= double(n);
  c.binary_ops /= double(n);
  for (Index l = 0; l < net.num_layers(); ++l) c.dense_ops += double(net.layer(l).weights().size()) * double(T);
  return c;
}

}  // namespace nmsnn
