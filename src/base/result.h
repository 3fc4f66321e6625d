#pragma once
// A value or an error code: what parsers and fallible calls return (C++20 has no std::expected).

#include <utility>
#include <variant>

namespace ustack {

template <typename E>
struct Unexpected {
  E error;
};
template <typename E>
Unexpected<E> unexpected(E e) {
  return {e};
}

template <typename T, typename E>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Unexpected<E> e) : v_(std::in_place_index<1>, e.error) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  E error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

}  // namespace ustack
