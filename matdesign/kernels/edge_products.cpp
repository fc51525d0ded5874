// Fused edge tensor products of the l <= 1 two-body layer, for inference (forces and stress need
// the first derivative only). One pass over the edges grouped by receiver computes the summed
// messages; one pass grouped by sender computes every gradient. Python side, layout and the
// meaning of each path: matdesign/edge_kernel.py.
//
// Layout (component-major, C channels): s (N, C) sender scalars; v (N, 3C) sender vectors,
// column k*C + u for Cartesian-harmonic component k of channel u; y (E, 3) the l = 1 edge
// harmonics; w (E, P*C) radial weights, path p in columns p*C .. p*C + C.
// Path codes: 0 scalar -> scalar   m[u]      = w[u] s[u]
//             1 scalar -> vector   m[k, u]   = y[k] w[u] s[u]
//             2 vector -> vector   m[k, u]   = w[u] v[k, u]
//             3 vector -> scalar   m[u]      = w[u] sum_k y[k] v[k, u]
#include <torch/extension.h>

#include <vector>

namespace {

// Edges grouped by `index` (counting sort, stable): perm lists edges, rowptr (n + 1) bounds.
std::pair<std::vector<int64_t>, std::vector<int64_t>> group_by(const int64_t* index, int64_t m,
                                                               int64_t n) {
  std::vector<int64_t> rowptr(n + 1, 0), perm(m);
  for (int64_t e = 0; e < m; ++e) {
    TORCH_CHECK(index[e] >= 0 && index[e] < n, "edge index out of range");
    ++rowptr[index[e] + 1];
  }
  for (int64_t i = 0; i < n; ++i) rowptr[i + 1] += rowptr[i];
  std::vector<int64_t> fill(rowptr.begin(), rowptr.end() - 1);
  for (int64_t e = 0; e < m; ++e) perm[fill[index[e]]++] = e;
  return {perm, rowptr};
}

int64_t width(int64_t code, int64_t c) { return (code == 1 || code == 2) ? 3 * c : c; }

void check_inputs(const at::Tensor& s, const at::Tensor& v, const at::Tensor& y,
                  const at::Tensor& w, const at::Tensor& receiver, const at::Tensor& sender,
                  const std::vector<int64_t>& kinds, bool mirrored) {
  const int64_t c = s.size(1), m = y.size(0);
  TORCH_CHECK(s.is_contiguous() && y.is_contiguous() && w.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(!mirrored || m % 2 == 0, "mirrored edges come in pairs");
  TORCH_CHECK(y.size(1) == 3 && w.size(0) == (mirrored ? m / 2 : m) &&
                  w.size(1) == (int64_t)kinds.size() * c,
              "edge shapes");
  TORCH_CHECK(receiver.numel() == m && sender.numel() == m, "edge index shapes");
  TORCH_CHECK(receiver.scalar_type() == at::kLong && sender.scalar_type() == at::kLong,
              "int64 edge indices");
  for (int64_t code : kinds) {
    TORCH_CHECK(code >= 0 && code <= 3, "path code 0-3");
    if (code >= 2) TORCH_CHECK(v.numel() == s.size(0) * 3 * c && v.is_contiguous(), "vectors");
  }
}

template <typename T>
void forward_impl(const T* s, const T* v, const T* y, const T* w, const int64_t* sender,
                  const std::vector<int64_t>& perm, const std::vector<int64_t>& rowptr,
                  const std::vector<int64_t>& kinds, int64_t n, int64_t c, int64_t half,
                  std::vector<T*>& out) {
  const int64_t np = kinds.size(), pc = np * c;
  at::parallel_for(0, n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t q = rowptr[i]; q < rowptr[i + 1]; ++q) {
        const int64_t e = perm[q], j = sender[e];
        const T* __restrict__ ye = y + 3 * e;
        const T* __restrict__ sj = s + j * c;
        const T* __restrict__ vj = v ? v + j * 3 * c : nullptr;
        for (int64_t p = 0; p < np; ++p) {
          const T* __restrict__ wp = w + (e >= half ? e - half : e) * pc + p * c;
          const int64_t code = kinds[p];
          T* __restrict__ o = out[p] + i * width(code, c);
          if (code == 0) {
            for (int64_t u = 0; u < c; ++u) o[u] += wp[u] * sj[u];
          } else if (code == 1) {
            for (int64_t k = 0; k < 3; ++k) {
              const T yk = ye[k];
              T* __restrict__ ok = o + k * c;
              for (int64_t u = 0; u < c; ++u) ok[u] += yk * wp[u] * sj[u];
            }
          } else if (code == 2) {
            for (int64_t k = 0; k < 3; ++k) {
              T* __restrict__ ok = o + k * c;
              const T* __restrict__ vk = vj + k * c;
              for (int64_t u = 0; u < c; ++u) ok[u] += wp[u] * vk[u];
            }
          } else {
            const T *vx = vj, *vy = vj + c, *vz = vj + 2 * c;
            for (int64_t u = 0; u < c; ++u)
              o[u] += wp[u] * (ye[0] * vx[u] + ye[1] * vy[u] + ye[2] * vz[u]);
          }
        }
      }
    }
  });
}

template <typename T>
void backward_impl(const std::vector<const T*>& g, const T* s, const T* v, const T* y,
                   const T* w, const int64_t* receiver, const std::vector<int64_t>& perm,
                   const std::vector<int64_t>& rowptr, const std::vector<int64_t>& kinds,
                   int64_t n, int64_t c, int64_t half, T* gs, T* gv, T* gy, T* gw) {
  const int64_t np = kinds.size(), pc = np * c;
  at::parallel_for(0, n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const T* __restrict__ sj = s + j * c;
      const T* __restrict__ vj = v ? v + j * 3 * c : nullptr;
      T* __restrict__ gsj = gs + j * c;
      T* __restrict__ gvj = gv ? gv + j * 3 * c : nullptr;
      for (int64_t q = rowptr[j]; q < rowptr[j + 1]; ++q) {
        const int64_t e = perm[q], i = receiver[e];
        const T* ye = y + 3 * e;
        T* gye = gy + 3 * e;
        for (int64_t p = 0; p < np; ++p) {
          const T* __restrict__ wp = w + (e >= half ? e - half : e) * pc + p * c;
          T* __restrict__ gwp = gw + e * pc + p * c;
          const int64_t code = kinds[p];
          const T* __restrict__ gi = g[p] + i * width(code, c);
          if (code == 0) {
            for (int64_t u = 0; u < c; ++u) {
              gwp[u] = gi[u] * sj[u];
              gsj[u] += gi[u] * wp[u];
            }
          } else if (code == 1) {
            const T *g0 = gi, *g1 = gi + c, *g2 = gi + 2 * c;
            T a0 = 0, a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a0, a1, a2)
            for (int64_t u = 0; u < c; ++u) {
              const T t = ye[0] * g0[u] + ye[1] * g1[u] + ye[2] * g2[u];
              const T ws = wp[u] * sj[u];
              gwp[u] = t * sj[u];
              gsj[u] += t * wp[u];
              a0 += g0[u] * ws;
              a1 += g1[u] * ws;
              a2 += g2[u] * ws;
            }
            gye[0] += a0;
            gye[1] += a1;
            gye[2] += a2;
          } else if (code == 2) {
            for (int64_t u = 0; u < c; ++u) gwp[u] = 0;
            for (int64_t k = 0; k < 3; ++k) {
              const T* __restrict__ gk = gi + k * c;
              const T* __restrict__ vk = vj + k * c;
              T* __restrict__ gvk = gvj + k * c;
              for (int64_t u = 0; u < c; ++u) {
                gwp[u] += gk[u] * vk[u];
                gvk[u] += gk[u] * wp[u];
              }
            }
          } else {
            const T *vx = vj, *vy = vj + c, *vz = vj + 2 * c;
            T a0 = 0, a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a0, a1, a2)
            for (int64_t u = 0; u < c; ++u) {
              const T gw_u = gi[u] * wp[u];
              gwp[u] = gi[u] * (ye[0] * vx[u] + ye[1] * vy[u] + ye[2] * vz[u]);
              gvj[u] += gw_u * ye[0];
              gvj[c + u] += gw_u * ye[1];
              gvj[2 * c + u] += gw_u * ye[2];
              a0 += gw_u * vx[u];
              a1 += gw_u * vy[u];
              a2 += gw_u * vz[u];
            }
            gye[0] += a0;
            gye[1] += a1;
            gye[2] += a2;
          }
        }
      }
    }
  });
}

}  // namespace

std::vector<at::Tensor> edge_forward(const at::Tensor& s, const at::Tensor& v,
                                     const at::Tensor& y, const at::Tensor& w,
                                     const at::Tensor& receiver, const at::Tensor& sender,
                                     int64_t n, std::vector<int64_t> kinds, bool mirrored) {
  check_inputs(s, v, y, w, receiver, sender, kinds, mirrored);
  const int64_t c = s.size(1), m = y.size(0), half = mirrored ? m / 2 : m;
  auto rec = receiver.contiguous(), snd = sender.contiguous();
  auto grouped = group_by(rec.data_ptr<int64_t>(), m, n);
  std::vector<at::Tensor> out;
  for (int64_t code : kinds) out.push_back(at::zeros({n, width(code, c)}, s.options()));
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "edge_forward", [&] {
    std::vector<scalar_t*> ptrs;
    for (auto& t : out) ptrs.push_back(t.data_ptr<scalar_t>());
    forward_impl<scalar_t>(s.data_ptr<scalar_t>(),
                           v.numel() ? v.data_ptr<scalar_t>() : nullptr,
                           y.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                           snd.data_ptr<int64_t>(), grouped.first, grouped.second, kinds, n, c,
                           half, ptrs);
  });
  return out;
}

std::vector<at::Tensor> edge_backward(const std::vector<at::Tensor>& grads, const at::Tensor& s,
                                      const at::Tensor& v, const at::Tensor& y,
                                      const at::Tensor& w, const at::Tensor& receiver,
                                      const at::Tensor& sender, std::vector<int64_t> kinds,
                                      bool mirrored) {
  check_inputs(s, v, y, w, receiver, sender, kinds, mirrored);
  const int64_t c = s.size(1), m = y.size(0), n = s.size(0), half = mirrored ? m / 2 : m;
  TORCH_CHECK(grads.size() == kinds.size(), "one gradient per path");
  std::vector<at::Tensor> g;
  for (size_t p = 0; p < grads.size(); ++p) {
    TORCH_CHECK(grads[p].size(0) == n && grads[p].size(1) == width(kinds[p], c), "grad shape");
    g.push_back(grads[p].contiguous());
  }
  auto rec = receiver.contiguous(), snd = sender.contiguous();
  auto grouped = group_by(snd.data_ptr<int64_t>(), m, n);
  auto gs = at::zeros_like(s);
  auto gv = v.numel() ? at::zeros_like(v) : at::zeros({0}, s.options());
  auto gy = at::zeros_like(y);
  auto gw = at::empty({m, w.size(1)}, w.options());  // per edge; mirrored: halves summed below
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "edge_backward", [&] {
    std::vector<const scalar_t*> ptrs;
    for (auto& t : g) ptrs.push_back(t.data_ptr<scalar_t>());
    backward_impl<scalar_t>(ptrs, s.data_ptr<scalar_t>(),
                            v.numel() ? v.data_ptr<scalar_t>() : nullptr,
                            y.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                            rec.data_ptr<int64_t>(), grouped.first, grouped.second, kinds, n, c,
                            half, gs.data_ptr<scalar_t>(),
                            gv.numel() ? gv.data_ptr<scalar_t>() : nullptr,
                            gy.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>());
  });
  if (mirrored) gw = gw.narrow(0, 0, half) + gw.narrow(0, half, half);
  return {gs, gv, gy, gw};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &edge_forward, "summed messages of the fused l <= 1 paths");
  m.def("backward", &edge_backward, "gradients of the summed messages");
}
