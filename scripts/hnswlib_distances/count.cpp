// Distances per query of hnswlib's own search on a saved hnswlib index, split into level 0 and
// the levels above, with recall@10 and QPS. Built against a copy of hnswlib's header patched by
// run.sh so that `metric_distance_computations` counts the level-0 distances actually computed
// (neighbours not yet visited) and `metric_hops` the upper levels' (every listed neighbour:
// hnswlib's greedy descent measures them all).
#include "hnswlib/hnswlib.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

template <typename T>
static std::vector<std::vector<T>> read_vecs(const char* path) {
    std::vector<std::vector<T>> rows;
    FILE* f = std::fopen(path, "rb");
    if (!f) { std::perror(path); std::exit(1); }
    int d;
    while (std::fread(&d, 4, 1, f) == 1) {
        std::vector<T> v(d);
        if (std::fread(v.data(), sizeof(T), d, f) != size_t(d)) break;
        rows.push_back(std::move(v));
    }
    std::fclose(f);
    return rows;
}

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: count INDEX QUERIES.fvecs GT.ivecs l2|ip EF [EF...]\n");
        return 1;
    }
    auto queries = read_vecs<float>(argv[2]);
    auto truth = read_vecs<int>(argv[3]);
    const int dim = int(queries[0].size());
    const bool ip = std::string(argv[4]) == "ip";
    hnswlib::SpaceInterface<float>* space;
    if (ip) space = new hnswlib::InnerProductSpace(dim);
    else space = new hnswlib::L2Space(dim);
    hnswlib::HierarchicalNSW<float> index(space, argv[1]);
    if (ip) {
        // hnswlib's Python `cosine` space normalises on insert and query; the saved rows are unit.
        for (auto& q : queries) {
            double n = 0;
            for (float x : q) n += double(x) * x;
            const float inv = float(1.0 / std::sqrt(n));
            for (float& x : q) x *= inv;
        }
    }
    const int passes = 3;
    for (int a = 5; a < argc; a++) {
        const int ef = std::atoi(argv[a]);
        index.setEf(ef);
        index.metric_distance_computations = 0;
        index.metric_hops = 0;
        long hits = 0;
        double best = 1e30;
        for (int pass = 0; pass < passes; pass++) {
            const auto start = std::chrono::steady_clock::now();
            for (size_t i = 0; i < queries.size(); i++) {
                auto found = index.searchKnn(queries[i].data(), 10);
                if (pass > 0) continue;
                while (!found.empty()) {
                    const int label = int(found.top().second);
                    found.pop();
                    for (int j = 0; j < 10; j++) hits += truth[i][j] == label;
                }
            }
            const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
            if (took.count() < best) best = took.count();
        }
        const double n = double(queries.size()) * passes;
        // +1 each: the entry point's distance on the top level, and again on level 0.
        std::printf("ef=%d recall@10=%.4f level0/q=%.1f upper/q=%.1f total/q=%.1f qps=%.0f\n", ef,
                    double(hits) / (10.0 * queries.size()), index.metric_distance_computations / n + 1,
                    index.metric_hops / n + 1,
                    (index.metric_distance_computations + index.metric_hops) / n + 2,
                    queries.size() / best);
    }
    delete space;
}
