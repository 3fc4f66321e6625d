// STYLE.md: the protocol core reads no clock, no random source and no device. This test reads
// every file under the core folders and fails on a clock, a random device or a DPDK (rte_) name
// in their code. src/dev is the device layer and may use them. Comments are not code: a comment
// may say that the engine, elsewhere, uses steady_clock.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#ifndef USTACK_SOURCE_ROOT
#error "tests/unit/meson.build passes the source root as USTACK_SOURCE_ROOT"
#endif

namespace ustack {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCoreFolders[] = {"src/base", "src/eth", "src/ip", "src/tcp", "src/udp", "src/stack"};

struct Forbidden {
  std::string_view name;
  bool prefix;  // matches any identifier starting with it
};
constexpr Forbidden kForbidden[] = {
    {"steady_clock", false}, {"system_clock", false},  {"high_resolution_clock", false},
    {"random_device", false}, {"clock_gettime", false}, {"gettimeofday", false},
    {"rte_", true},
};

/// The text with comments blanked (newlines kept, so line numbers still match). String and
/// character literals are kept as they are, and a comment marker inside one is not a comment.
std::string strip_comments(std::string_view src) {
  std::string out(src);
  enum { kCode, kLine, kBlock, kString, kChar } state = kCode;
  for (size_t i = 0; i < out.size(); ++i) {
    const char c = src[i];
    const char next = i + 1 < src.size() ? src[i + 1] : '\0';
    switch (state) {
      case kCode:
        if (c == '/' && next == '/') {
          state = kLine;
          out[i] = ' ';
        } else if (c == '/' && next == '*') {
          state = kBlock;
          out[i] = out[i + 1] = ' ';
          ++i;
        } else if (c == '"') {
          state = kString;
        } else if (c == '\'') {
          state = kChar;
        }
        break;
      case kLine:
        if (c == '\n') {
          state = kCode;
        } else {
          out[i] = ' ';
        }
        break;
      case kBlock:
        if (c == '*' && next == '/') {
          out[i] = out[i + 1] = ' ';
          ++i;
          state = kCode;
        } else if (c != '\n') {
          out[i] = ' ';
        }
        break;
      case kString:
      case kChar:
        if (c == '\\') {
          ++i;
        } else if (c == (state == kString ? '"' : '\'') || c == '\n') {
          state = kCode;
        }
        break;
    }
  }
  return out;
}

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

/// "file:line: name" for every forbidden name in `code` (comments already stripped).
std::vector<std::string> violations(std::string_view file, std::string_view code) {
  std::vector<std::string> out;
  for (const Forbidden& f : kForbidden) {
    for (size_t pos = code.find(f.name); pos != std::string_view::npos; pos = code.find(f.name, pos + 1)) {
      const bool starts_word = pos == 0 || !is_ident(code[pos - 1]);
      const size_t end = pos + f.name.size();
      const bool ends_word = f.prefix || end >= code.size() || !is_ident(code[end]);
      if (!starts_word || !ends_word) continue;
      const size_t line = 1 + static_cast<size_t>(std::count(code.begin(), code.begin() + pos, '\n'));
      out.push_back(std::string(file) + ":" + std::to_string(line) + ": " + std::string(f.name));
    }
  }
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(CorePurity, ScannerFindsCodeAndIgnoresComments) {
  EXPECT_EQ(violations("x.cc", strip_comments("auto t = std::chrono::steady_clock::now();\n")).size(), 1u);
  EXPECT_EQ(violations("x.cc", strip_comments("int a;\nstd::random_device rd;\n")),
            (std::vector<std::string>{"x.cc:2: random_device"}));
  EXPECT_EQ(violations("x.cc", strip_comments("rte_eth_rx_burst(port, 0, bufs, 32);")).size(), 1u);
  EXPECT_EQ(violations("x.cc", strip_comments("x = system_clock{};")).size(), 1u);
  EXPECT_TRUE(violations("x.cc", strip_comments("// the engine uses steady_clock\n/* rte_mbuf */ int x;")).empty());
  EXPECT_TRUE(violations("x.cc", strip_comments("int my_steady_clock_like = 0; write_(); forte_x();")).empty());
  EXPECT_TRUE(violations("x.cc", strip_comments("const char* s = \"// not a comment\"; int y;")).empty());
  EXPECT_EQ(violations("x.cc", strip_comments("const char* s = \"//\"; steady_clock::now();")).size(), 1u);
}

TEST(CorePurity, CoreFoldersReadNoClockRandomDeviceOrDpdk) {
  const fs::path root = USTACK_SOURCE_ROOT;
  ASSERT_TRUE(fs::is_directory(root / "src")) << "source root " << root << " has no src/";
  std::vector<std::string> found;
  size_t files = 0;
  bool saw_stack = false;
  for (const char* folder : kCoreFolders) {
    const fs::path dir = root / folder;
    if (!fs::exists(dir)) continue;  // src/tcp arrives later
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      ++files;
      const std::string rel = (fs::path(folder) / entry.path().lexically_relative(dir)).string();
      saw_stack |= rel == "src/stack/stack.cc";
      for (std::string& v : violations(rel, strip_comments(read_file(entry.path())))) found.push_back(std::move(v));
    }
  }
  // Not vacuous: the folders were there and were read.
  EXPECT_GE(files, 20u);
  EXPECT_TRUE(saw_stack);
  std::string report;
  for (const std::string& v : found) report += "  " + v + "\n";
  EXPECT_TRUE(found.empty()) << "the protocol core must take time, randomness and I/O from its caller:\n" << report;
}

}  // namespace
}  // namespace ustack
