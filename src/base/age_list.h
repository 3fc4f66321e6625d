#pragma once
// Oldest-first order of the entries of a bounded table (ARP cache, reassembly), so that evicting
// the oldest when the table is full costs O(1), never a scan. Intrusive: entries derive from
// AgeList<T>::Hook; the list owns nothing.

namespace ustack {

template <typename T>
class AgeList {
 public:
  struct Hook {
    T* older = nullptr;
    T* newer = nullptr;
  };

  T* oldest() const { return oldest_; }

  void push_newest(T& e) {
    e.older = newest_;
    e.newer = nullptr;
    if (newest_) newest_->newer = &e;
    newest_ = &e;
    if (!oldest_) oldest_ = &e;
  }

  void unlink(T& e) {
    if (e.older) e.older->newer = e.newer;
    if (e.newer) e.newer->older = e.older;
    if (oldest_ == &e) oldest_ = e.newer;
    if (newest_ == &e) newest_ = e.older;
    e.older = e.newer = nullptr;
  }

 private:
  T* oldest_ = nullptr;
  T* newest_ = nullptr;
};

}  // namespace ustack
