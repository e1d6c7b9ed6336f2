// Nothing lost, nothing half-written: outputs resolved and refused when they are not regular
// files, temporary files created exclusively (a planted link is never followed) and removed on
// failure and on SIGTERM/SIGINT, permissions kept, write errors reported, concurrent saves to
// one path; inputs refused by type (FIFO, device, directory) and bounded; the memory guard.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "test_helpers.hpp"

using namespace nmsnn;
namespace fs = std::filesystem;

namespace {

/// A fresh directory for one test, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "nmsnn_files_XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  /// Names in the directory that are not in `keep` (temporary files left behind).
  std::vector<std::string> others(const std::set<std::string>& keep) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path))
      if (!keep.count(e.path().filename().string())) out.push_back(e.path().filename().string());
    return out;
  }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

using test::error_of;

SpikingNetwork<BinaryClassification> small_net(std::uint64_t seed, Index hidden = 5) {
  return SpikingNetwork<BinaryClassification>({.inputs = 3, .hidden = {hidden}, .time_steps = 4, .seed = seed});
}

}  // namespace

TEST_CASE("write_file_atomically writes the content and leaves nothing else") {
  TempDir d;
  write_file_atomically(d / "out.txt", "hello");
  CHECK(slurp(d / "out.txt") == "hello");
  write_file_atomically(d / "out.txt", std::string(100000, 'x'));
  CHECK(slurp(d / "out.txt") == std::string(100000, 'x'));
  CHECK(d.others({"out.txt"}).empty());
  // A new file gets 0666 less the umask, as any program's new file.
  const mode_t mask = ::umask(022);
  ::umask(mask);
  struct stat st = {};
  REQUIRE(::stat((d / "out.txt").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));
}

TEST_CASE("outputs that are not regular files are refused and left as they were") {
  TempDir d;
  fs::create_directory(d / "dir");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
  fs::create_symlink(d / "nowhere", d / "dangling");
  CHECK(error_of([&] { write_file_atomically(d / "dir", "x"); }).find("a directory, not a regular file") != std::string::npos);
  CHECK(error_of([&] { write_file_atomically(d / "fifo", "x"); }).find("FIFO") != std::string::npos);
  CHECK(error_of([&] { write_file_atomically("/dev/null", "x"); }).find("character device") != std::string::npos);
  CHECK(error_of([&] { write_file_atomically(d / "dangling", "x"); }).find("symbolic link to nothing") != std::string::npos);
  CHECK(error_of([&] { write_file_atomically(d / "missing/out", "x"); }).find("no directory") != std::string::npos);
  CHECK(error_of([&] { write_file_atomically(d / "dir/", "x"); }).find("not a file name") != std::string::npos);
  CHECK(fs::is_directory(d / "dir"));
  CHECK(fs::is_fifo(d / "fifo"));
  CHECK(fs::is_symlink(d / "dangling"));
  CHECK(d.others({"dir", "fifo", "dangling"}).empty());
  SpikingNetwork<BinaryClassification> net = small_net(1);
  CHECK_THROWS_AS(save_model("/dev/null", net), IoError);
  CHECK_THROWS_AS(save_model(d / "fifo", net), IoError);
}

TEST_CASE("a symbolic link as output: the file it names is replaced, the link stays") {
  TempDir d;
  spit(d / "real.txt", "old");
  fs::create_symlink(d / "real.txt", d / "link.txt");
  write_file_atomically(d / "link.txt", "new");
  CHECK(fs::is_symlink(d / "link.txt"));
  CHECK(slurp(d / "real.txt") == "new");
  CHECK(d.others({"real.txt", "link.txt"}).empty());
}

TEST_CASE("a planted link with the old temporary name is never followed") {
  TempDir d;
  spit(d / "victim", "precious");
  const std::string out = d / "model.safetensors";
  // The names earlier versions used: <out>.tmp and <out>.tmp.<pid>.
  fs::create_symlink(d / "victim", out + ".tmp");
  fs::create_symlink(d / "victim", out + ".tmp." + std::to_string(::getpid()));
  SpikingNetwork<BinaryClassification> net = small_net(2);
  save_model(out, net);
  CHECK(slurp(d / "victim") == "precious");
  CHECK(fs::is_regular_file(fs::symlink_status(out)));
  CHECK_NOTHROW(load_model<SpikingNetwork<BinaryClassification>>(out));
}

TEST_CASE("replacing a file keeps its permissions") {
  TempDir d;
  const std::string out = d / "m.safetensors";
  SpikingNetwork<BinaryClassification> net = small_net(3);
  save_model(out, net);
  REQUIRE(::chmod(out.c_str(), 0600) == 0);
  save_model(out, net);
  struct stat st = {};
  REQUIRE(::stat(out.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  REQUIRE(::chmod(out.c_str(), 0640) == 0);
  write_file_atomically(out, slurp(out));
  REQUIRE(::stat(out.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("save_model and Report::save replace only their own kind of file, unless forced") {
  TempDir d;
  const std::string csv = d / "data.csv";
  spit(csv, "a,b,target\n1,2,0\n");
  SpikingNetwork<BinaryClassification> net = small_net(4);
  CHECK(error_of([&] { save_model(csv, net); }).find("exists and is not an nmsnn model") != std::string::npos);
  CHECK(slurp(csv) == "a,b,target\n1,2,0\n");
  save_model(csv, net, {}, {.force = true});
  CHECK_NOTHROW(load_model<SpikingNetwork<BinaryClassification>>(csv));
  // A model replaces a model without force.
  CHECK_NOTHROW(save_model(csv, small_net(5)));
  Report report("r");
  report.add_paragraph("x");
  spit(d / "notes.html", "<html>my notes</html>");
  CHECK(error_of([&] { report.save(d / "notes.html"); }).find("not an nmsnn report") != std::string::npos);
  CHECK(slurp(d / "notes.html") == "<html>my notes</html>");
  report.save(d / "r.html");
  CHECK_NOTHROW(report.save(d / "r.html"));  // its own report
  CHECK(error_of([&] { report.save(csv); }).find("not an nmsnn report") != std::string::npos);  // a model is no report
  report.save(d / "notes.html", true);
  CHECK(Report::is_report_file(d / "notes.html"));
}

TEST_CASE("a failed write is an error and leaves the old file and no temporary file") {
  TempDir d;
  const std::string out = d / "out.bin";
  spit(out, "old content");
  // A file-size limit makes write() fail with EFBIG (SIGXFSZ ignored for the test).
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit old = {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string e = error_of([&] { write_file_atomically(out, std::string(1 << 20, 'z')); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  CHECK(e.find("write failed") != std::string::npos);
  CHECK(slurp(out) == "old content");
  CHECK(d.others({"out.bin"}).empty());
  // An exception between writing and renaming (the test hook) removes the temporary file too.
  detail::atomic_write_hook() = [](const std::string&) { throw std::runtime_error("interrupted"); };
  CHECK_THROWS_AS(write_file_atomically(out, "new"), std::runtime_error);
  detail::atomic_write_hook() = nullptr;
  CHECK(slurp(out) == "old content");
  CHECK(d.others({"out.bin"}).empty());
}

TEST_CASE("SIGTERM or SIGINT during a save removes the temporary file and ends the process by that signal") {
  for (const int sig : {SIGTERM, SIGINT}) {
    INFO("signal " << sig);
    TempDir d;
    const std::string out = d / "m.safetensors";
    spit(out, "old");
    static int signal_to_raise;
    signal_to_raise = sig;
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      std::signal(SIGTERM, SIG_DFL);
      std::signal(SIGINT, SIG_DFL);
      // After the temporary file is written, before the rename: the signal arrives.
      detail::atomic_write_hook() = [](const std::string&) { ::raise(signal_to_raise); };
      try {
        write_file_atomically(out, "new content", {.force = true});
      } catch (...) {
      }
      ::_exit(0);  // not reached: the signal ends the process
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == sig);
    CHECK(slurp(out) == "old");
    CHECK(d.others({"m.safetensors"}).empty());
  }
}

TEST_CASE("two threads saving to one path: the file is always one whole model, and loads meanwhile never see half of one") {
  TempDir d;
  const std::string out = d / "m.safetensors";
  const auto a = small_net(10, 5), b = small_net(11, 40);
  save_model(out, a);
  const std::string bytes_a = slurp(out);
  save_model(out, b);
  const std::string bytes_b = slurp(out);
  REQUIRE(bytes_a != bytes_b);
  std::atomic<bool> stop{false};
  std::atomic<int> loads{0}, bad_loads{0}, failed_saves{0};
  std::thread reader([&] {
    while (!stop) {
      try {
        (void)load_model<SpikingNetwork<BinaryClassification>>(out);
        ++loads;
      } catch (const Error&) {
        ++bad_loads;
      }
    }
  });
  auto saver = [&](const SpikingNetwork<BinaryClassification>& net) {
    for (int i = 0; i < 25; ++i) try {
        save_model(out, net);
      } catch (const Error&) {
        ++failed_saves;
      }
  };
  std::thread t1(saver, std::cref(a)), t2(saver, std::cref(b));
  t1.join();
  t2.join();
  stop = true;
  reader.join();
  CHECK(failed_saves == 0);
  CHECK(bad_loads == 0);
  CHECK(loads > 0);
  const std::string final_bytes = slurp(out);
  CHECK((final_bytes == bytes_a || final_bytes == bytes_b));
  CHECK(d.others({"m.safetensors"}).empty());
}

TEST_CASE("inputs that are not regular files are refused at once: no hang on a FIFO, no endless read of /dev/zero") {
  TempDir d;
  REQUIRE(::mkfifo((d / "fifo.csv").c_str(), 0600) == 0);
  fs::create_directory(d / "dir.csv");
  ::alarm(60);  // a reader that blocked on the FIFO would end the test here
  CHECK(error_of([&] { read_csv(d / "fifo.csv"); }).find("FIFO") != std::string::npos);
  CHECK(error_of([&] { read_csv("/dev/zero"); }).find("character device") != std::string::npos);
  CHECK(error_of([&] { read_csv(d / "dir.csv"); }).find("a directory") != std::string::npos);
  CHECK(error_of([&] { (void)load_model<SpikingNetwork<BinaryClassification>>(d / "fifo.csv"); }).find("FIFO") != std::string::npos);
  CHECK(error_of([&] { (void)load_model<SpikingNetwork<BinaryClassification>>("/dev/zero"); }).find("character device") !=
        std::string::npos);
  CHECK(error_of([&] { (void)inspect_model("/dev/zero"); }).find("character device") != std::string::npos);
  CHECK(error_of([&] { (void)read_idx(d / "fifo.csv"); }).find("FIFO") != std::string::npos);
  CHECK(error_of([&] { (void)read_idx("/dev/zero"); }).find("character device") != std::string::npos);
  ::alarm(0);
  // A regular file with a line beyond the cap ends in an error, not an unbounded string.
  spit(d / "long.csv", "a,b\n1" + std::string(100000, ' ') + ",0\n");
  CsvOptions o;
  o.max_line_bytes = 4096;
  CHECK(error_of([&] { read_csv(d / "long.csv", o); }).find("line 2 is longer than 4096 bytes") != std::string::npos);
  CHECK(read_csv(d / "long.csv").rows() == 1);  // the default cap takes it
}

TEST_CASE("the memory guard: overflow-safe, counts parameters, gradients and optimiser state, follows the machine") {
  // time_steps = 2^62: the estimate saturates instead of wrapping to a small number.
  SpikingNetwork<BinaryClassification> huge_t({.inputs = 3, .hidden = {4}, .time_steps = Index(1) << 62, .seed = 1});
  const Eigen::MatrixXd X = Eigen::MatrixXd::Constant(4, 3, 0.5);
  const Eigen::VectorXd y = (Eigen::VectorXd(4) << 0, 1, 0, 1).finished();
  CHECK(huge_t.workspace_bytes(4) == std::numeric_limits<std::size_t>::max());
  Adam adam;
  CHECK_THROWS_AS(huge_t.fit(X, y, adam, {.epochs = 1, .progress = Progress::off}), ResourceError);
  CHECK_THROWS_AS(huge_t.predict(X), ResourceError);
  // 4000 x 1000 weights: the batch's buffers are small, but weights, gradients, Adam's two
  // moments and the rollback copy are 5 x 16 MB.
  SpikingNetwork<BinaryClassification> wide({.inputs = 1000, .hidden = {4000}, .time_steps = 1, .seed = 1});
  const Eigen::MatrixXd Xw = Eigen::MatrixXd::Constant(2, 1000, 0.1);
  const Eigen::VectorXd yw = (Eigen::VectorXd(2) << 0, 1).finished();
  CHECK(wide.workspace_bytes(2) < (std::size_t(1) << 20));
  const std::string e = error_of([&] {
    wide.fit(Xw, yw, adam, {.epochs = 1, .progress = Progress::off, .memory_limit = std::size_t(32) << 20});
  });
  CHECK(e.find("fit: training: about 7") != std::string::npos);  // 5 x 16 MB and the rest
  CHECK(e.find("more than the memory limit of 32 MiB") != std::string::npos);
  CHECK_NOTHROW(wide.fit(Xw, yw, adam, {.epochs = 1, .progress = Progress::off, .memory_limit = std::size_t(512) << 20}));
  Sgd sgd({.learning_rate = 0.1});  // no momentum: no state, a smaller estimate
  CHECK(wide.fit_memory_bytes(2, 2, 0, 0, detail::optimizer_slots(sgd), true) <
        wide.fit_memory_bytes(2, 2, 0, 0, detail::optimizer_slots(adam), true));
  // The default follows the machine: at most what /proc/meminfo says is available.
  reset_memory_limit();
  long long avail_kb = -1;
  {
    std::ifstream in("/proc/meminfo");
    std::string key;
    long long v;
    std::string unit;
    while (in >> key >> v >> unit)
      if (key == "MemAvailable:") avail_kb = v;
  }
  if (avail_kb > 0) {
    CHECK(memory_limit() > 0);
    CHECK(memory_limit() <= std::size_t(avail_kb) * 1024);
  }
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  // An address-space limit lowers it (after the once-a-second refresh).
  struct rlimit old = {};
  REQUIRE(::getrlimit(RLIMIT_AS, &old) == 0);
  long long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  struct rlimit lowered = old;
  lowered.rlim_cur = rlim_t(pages * ::sysconf(_SC_PAGESIZE)) + (rlim_t(256) << 20);
  if (old.rlim_max == RLIM_INFINITY || lowered.rlim_cur < old.rlim_max) {
    REQUIRE(::setrlimit(RLIMIT_AS, &lowered) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    const std::size_t limited = memory_limit();
    ::setrlimit(RLIMIT_AS, &old);
    CHECK(limited <= (std::size_t(256) << 20));
    CHECK(limited > 0);
  }
#endif
  // Set explicitly, then back to automatic.
  set_memory_limit(std::size_t(16) << 20);
  CHECK(memory_limit() == (std::size_t(16) << 20));
  set_memory_limit(0);
  CHECK(memory_limit() == 0);
  reset_memory_limit();
  CHECK(memory_limit() > 0);
}

TEST_CASE("an allocation failure becomes a ResourceError naming what was allocated") {
  const std::string e = error_of([] {
    detail::allocating("fit", "allocating the test's buffer", []() -> int { throw std::bad_alloc(); });
  });
  CHECK(e == "fit: out of memory while allocating the test's buffer");
  CHECK_THROWS_AS(detail::allocating("x", "y", []() -> int { throw std::bad_alloc(); }), ResourceError);
  // A CSV file larger than the limit allows: refused while it is read.
  TempDir d;
  std::string s = "a,b,c,target\n";
  for (int i = 0; i < 40000; ++i) s += "1.5,2.5,3.5,0\n";
  spit(d / "big.csv", s);
  set_memory_limit(std::size_t(1) << 20);
  const std::string e2 = error_of([&] { read_csv(d / "big.csv"); });
  reset_memory_limit();
  CHECK(e2.find("the rows read so far (") != std::string::npos);
  CHECK(e2.find("more than the memory limit of 1 MiB") != std::string::npos);
  CHECK(read_csv(d / "big.csv").rows() == 40000);
}

TEST_CASE("weights whose outputs overflow: predict reports it instead of returning NaN") {
  SpikingNetwork<MulticlassClassification> net({.inputs = 2, .outputs = 3, .hidden = {4}, .time_steps = 4, .seed = 1});
  net.layer(0).set_weights(Eigen::MatrixXf::Constant(4, 2, 3e38f));
  net.layer(1).set_weights(Eigen::MatrixXf::Constant(3, 4, 3e38f));
  const Eigen::MatrixXd X = Eigen::MatrixXd::Constant(2, 2, 1.0);
  CHECK_THROWS_AS(net.predict_proba(X), NumericalError);
  CHECK(error_of([&] { net.predict(X); }).find("is not finite") != std::string::npos);
}
