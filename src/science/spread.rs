//! Label spreading (Zhou et al. 2004) over the symmetrised kNN graph with weights
//! exp(−d²/σ²), σ the median edge length, α = 0.9, 30 iterations: the class scores of objects
//! with no labelled neighbour among their nearest. Pure; imports nothing of the crate.

/// Label spreading over a graph of `n` nodes. `edges` are (i, j, distance), treated as
/// undirected; `seeds` (node, class index). Returns per-node class scores (rows sum to 1
/// where any label reached the node, else all zero).
pub fn spread_labels(
    n: usize,
    edges: &[(usize, usize, f32)],
    seeds: &[(usize, usize)],
    n_classes: usize,
) -> Vec<Vec<f64>> {
    if seeds.is_empty() || n_classes == 0 {
        // Nothing to spread: every score stays zero.
        return vec![vec![0.0; n_classes]; n];
    }
    let mut lengths: Vec<f32> = edges.iter().map(|e| e.2).collect();
    lengths.sort_by(f32::total_cmp);
    let sigma = f64::from(lengths.get(lengths.len() / 2).copied().unwrap_or(1.0)).max(1e-6);
    let mut adj: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for &(i, j, d) in edges {
        let w = (-(f64::from(d) / sigma).powi(2)).exp();
        adj[i].push((j, w));
        adj[j].push((i, w));
    }
    let degree: Vec<f64> = adj
        .iter()
        .map(|a| a.iter().map(|(_, w)| w).sum::<f64>().max(1e-12))
        .collect();
    // Each edge's symmetric normalisation α·w/√(d_i d_j), once rather than per iteration.
    let alpha = 0.9;
    for (i, a) in adj.iter_mut().enumerate() {
        for (j, w) in a.iter_mut() {
            *w *= alpha / (degree[i] * degree[*j]).sqrt();
        }
    }
    let mut y = vec![vec![0.0; n_classes]; n];
    for &(i, c) in seeds {
        y[i][c] = 1.0;
    }
    let mut f = y.clone();
    for _ in 0..30 {
        let mut next = vec![vec![0.0; n_classes]; n];
        for i in 0..n {
            for &(j, s) in &adj[i] {
                for c in 0..n_classes {
                    next[i][c] += s * f[j][c];
                }
            }
            for c in 0..n_classes {
                next[i][c] += (1.0 - alpha) * y[i][c];
            }
        }
        f = next;
    }
    for row in &mut f {
        let total: f64 = row.iter().sum();
        if total > 0.0 {
            for x in row.iter_mut() {
                *x /= total;
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn spreading_reaches_unlabelled_nodes() {
        // 0 - 1 - 2   3 - 4 ; seeds: 0 is class 0, 4 is class 1.
        let edges = [(0, 1, 1.0), (1, 2, 1.0), (3, 4, 1.0)];
        let f = spread_labels(5, &edges, &[(0, 0), (4, 1)], 2);
        assert!(f[2][0] > 0.99);
        assert!(f[3][1] > 0.99);
    }
}
