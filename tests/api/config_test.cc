// Configuration: TOML file, environment overrides, and errors that name the key.

#include "api/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <string>

namespace ustack::api {
namespace {

std::string write_file(const std::string& text) {
  char path[] = "/tmp/ustack-config-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(Config, DefaultsNeedNothing) {
  auto c = load_config("", {});
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->dev, "net_tap0,iface=ust0");
  EXPECT_EQ(c->stack.address.to_string(), "198.18.0.2/24");
  EXPECT_FALSE(c->stack.gateway.has_value());
  EXPECT_EQ(c->stack.mtu, 0);
  EXPECT_EQ(c->cores, 1);
  auto four = load_config("", {{"USTACK_CORES", "4"}});
  ASSERT_TRUE(four.ok()) << four.error();
  EXPECT_EQ(four->cores, 4);
}

TEST(Config, FileThenEnvironmentWins) {
  std::string path = write_file("ip = \"198.19.5.9/16\"\nmtu = 1400\ngw = \"198.19.0.1\"\ndev = \"net_null0\"\n");
  auto c = load_config(path, {{"USTACK_MTU", "1280"}, {"USTACK_DEV", "net_tap0,iface=x"}});
  std::remove(path.c_str());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->stack.address.to_string(), "198.19.5.9/16");
  EXPECT_EQ(c->stack.gateway->to_string(), "198.19.0.1");
  EXPECT_EQ(c->stack.mtu, 1280);
  EXPECT_EQ(c->dev, "net_tap0,iface=x");
}

TEST(Config, BadEnvironmentValueNamesTheVariable) {
  for (auto [key, value] : std::initializer_list<std::pair<const char*, const char*>>{
           {"USTACK_MTU", "abc"}, {"USTACK_MTU", "67"}, {"USTACK_MTU", "9001"}, {"USTACK_IP", "198.18.0.2"},
           {"USTACK_IP", "300.1.1.1/24"}, {"USTACK_IP", "127.0.0.1/8"}, {"USTACK_GW", "nope"},
           {"USTACK_CORES", "0"}, {"USTACK_CORES", "33"}, {"USTACK_TTL", "0"}, {"USTACK_IP", "198.18.0.255/24"},
           {"USTACK_IP", "198.18.0.0/24"}}) {
    auto c = load_config("", {{key, value}});
    ASSERT_FALSE(c.ok()) << key << "=" << value;
    EXPECT_NE(c.error().find(key), std::string::npos) << c.error();
    EXPECT_NE(c.error().find(value), std::string::npos) << c.error();
  }
}

TEST(Config, TcpKeysReachTheStack) {
  std::string path = write_file("tcp_time_wait_s = 5\ntcp_rcvbuf = 65536\n");
  auto c = load_config(path, {{"USTACK_TCP_RTO_MIN_MS", "1000"}, {"USTACK_TCP_DELAYED_ACK_MS", "200"}});
  std::remove(path.c_str());
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(c->stack.tcp.time_wait, std::chrono::seconds(5));
  EXPECT_EQ(c->stack.tcp.rcvbuf, 65536u);
  EXPECT_EQ(c->stack.tcp.rto.min, std::chrono::milliseconds(1000));
  EXPECT_EQ(c->stack.tcp.delayed_ack, std::chrono::milliseconds(200));
  auto bad = load_config("", {{"USTACK_TCP_DELAYED_ACK_MS", "501"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("USTACK_TCP_DELAYED_ACK_MS"), std::string::npos) << bad.error();
}

TEST(Config, GatewayMustBeOnTheSubnetAndNotUs) {
  auto c = load_config("", {{"USTACK_GW", "10.0.0.1"}});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("USTACK_GW"), std::string::npos) << c.error();
  c = load_config("", {{"USTACK_GW", "198.18.0.2"}});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("our own address"), std::string::npos) << c.error();
}

TEST(Config, FileErrorsNameTheKey) {
  std::string typo = write_file("mtuu = 1500\n");
  auto c = load_config(typo, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("unknown key 'mtuu'"), std::string::npos) << c.error();
  std::remove(typo.c_str());

  std::string bad = write_file("mtu = \"big\"\n");
  c = load_config(bad, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("key 'mtu'"), std::string::npos) << c.error();
  std::remove(bad.c_str());

  std::string broken = write_file("mtu = = 3\n");
  c = load_config(broken, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find(broken), std::string::npos) << c.error();
  std::remove(broken.c_str());

  c = load_config("/nonexistent/ustack.toml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("/nonexistent/ustack.toml"), std::string::npos) << c.error();
}

TEST(Config, EveryKeyHasBothSpellingsAndHelp) {
  for (const ConfigKey& k : config_keys()) {
    EXPECT_EQ("USTACK_" + [&] {
      std::string up(k.toml);
      for (char& ch : up) ch = static_cast<char>(std::toupper(ch));
      return up;
    }(), k.env);
    EXPECT_GT(std::string(k.help).size(), 10u);
  }
}

}  // namespace
}  // namespace ustack::api
