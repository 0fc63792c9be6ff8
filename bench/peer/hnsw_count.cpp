// hnswlib 0.8.0 on the points usearch_sweep.py wrote (issue 14, W2): builds the graph (M 16,
// ef_construction 200, 2 threads) or loads it from INDEX, then for each ef: queries/s on one
// thread (each ef at least 3 s), recall@10 by id (the point itself left out), and the distance
// computations per query (a counting space around hnswlib's own L2Space). Prints JSON.
//
//   g++ -O3 -march=native -std=c++17 -I hnswlib-0.8.0 bench/peer/hnsw_count.cpp -o hnsw_count
//   ./hnsw_count OUT/points.f32 DIM OUT/qids.i64 OUT/truth.i64 INDEX [M ef_construction]
//
// (hnswlib-0.8.0 is the source distribution of the PyPI package, headers only.)
#include "hnswlib/hnswlib.h"
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>
#include <vector>
static std::atomic<long> g_dist{0};
static hnswlib::DISTFUNC<float> g_inner;
static float counting(const void *a, const void *b, const void *p) { g_dist++; return g_inner(a, b, p); }
struct Counting : hnswlib::SpaceInterface<float> {
  hnswlib::L2Space l2; Counting(size_t d) : l2(d) { g_inner = l2.get_dist_func(); }
  size_t get_data_size() override { return l2.get_data_size(); }
  hnswlib::DISTFUNC<float> get_dist_func() override { return counting; }
  void *get_dist_func_param() override { return l2.get_dist_func_param(); }
};
template <class T> std::vector<T> slurp(const char *p) {
  std::ifstream f(p, std::ios::binary | std::ios::ate); size_t n = f.tellg(); f.seekg(0);
  std::vector<T> v(n / sizeof(T)); f.read((char *)v.data(), n); return v; }
int main(int argc, char **argv) {
  if (argc < 6) { fprintf(stderr, "points dim qids truth index [M efc]\n"); return 2; }
  size_t dim = atoi(argv[2]); auto pts = slurp<float>(argv[1]); size_t n = pts.size() / dim;
  auto qids = slurp<int64_t>(argv[3]); auto truth = slurp<int64_t>(argv[4]); size_t Q = qids.size();
  size_t M = argc > 6 ? atoi(argv[6]) : 16, efc = argc > 7 ? atoi(argv[7]) : 200;
  hnswlib::L2Space space(dim);
  { std::ifstream t(argv[5]); if (!t.good()) {
    auto t0 = std::chrono::steady_clock::now();
    hnswlib::HierarchicalNSW<float> h(&space, n, M, efc, 100);
    h.addPoint(&pts[0], 0);
    std::atomic<size_t> next{1}; std::vector<std::thread> th;
    for (int w = 0; w < 2; w++) th.emplace_back([&] { for (size_t i; (i = next++) < n;) h.addPoint(&pts[i * dim], i); });
    for (auto &x : th) x.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fprintf(stderr, "built %zu points in %.1f s (%.0f points/s)\n", n, s, n / s);
    h.saveIndex(argv[5]); } }
  hnswlib::HierarchicalNSW<float> h(&space, argv[5]);
  Counting cs(dim); hnswlib::HierarchicalNSW<float> hc(&cs, argv[5]);
  printf("[");
  int efs[] = {10, 12, 16, 20, 24, 32, 48, 64, 96, 128};
  for (int e = 0; e < 10; e++) {
    int ef = efs[e]; h.setEf(ef); hc.setEf(ef);
    double found = 0; g_dist = 0; 
    for (size_t q = 0; q < Q; q++) {
      auto r = hc.searchKnn(&pts[qids[q] * dim], 11); std::set<int64_t> t(&truth[q * 10], &truth[q * 10] + 10);
      int got = 0, kept = 0; std::vector<size_t> ids;
      while (!r.empty()) { ids.push_back(r.top().second); r.pop(); }
      for (auto it = ids.rbegin(); it != ids.rend() && kept < 10; ++it) { if ((int64_t)*it == qids[q]) continue; kept++; got += t.count(*it); }
      found += got / 10.0; }
    long dist = g_dist.load();
    size_t done = 0; auto t0 = std::chrono::steady_clock::now(); double s = 0;
    while (s < 3.0) { for (size_t q = 0; q < Q; q++) { auto r = h.searchKnn(&pts[qids[q] * dim], 11); done++; }
      s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
    printf("%s{\"ef\": %d, \"qps\": %.0f, \"recall\": %.4f, \"distances\": %.1f}\n", e ? "," : "", ef, done / s, found / Q, (double)dist / Q);
    fflush(stdout); }
  printf("]\n"); }
