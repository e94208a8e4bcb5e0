//! Cycles among an experiment file's raw stages (their `from` references), found before
//! anything is resolved so each is reported as a config error at the span of the `from` that
//! closes it. The resolved, acyclic graph is [`crate::graph::StageGraph`].

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use super::raw::RawStage;

/// A cycle among raw stages: the stage names around it, and the first `from` span that closes it.
pub(crate) struct Cycle {
    pub names: Vec<String>,
    pub first_edge: (String, Range<usize>),
}

/// Cycles among stages' `from` references (one per strongly connected component), so they can be
/// reported with spans before anything else is built.
pub(crate) fn find_cycles(stages: &[RawStage<'_>]) -> Vec<Cycle> {
    let mut graph = DiGraph::<usize, Range<usize>>::new();
    let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for (i, s) in stages.iter().enumerate() {
        for f in &s.from {
            let target = f.target.split('/').next().unwrap_or("");
            if let Some(&j) = index.get(target) {
                if j != i {
                    graph.add_edge(nodes[j], nodes[i], f.target_span.clone());
                }
            }
        }
    }
    let mut cycles = Vec::new();
    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() < 2 {
            continue;
        }
        let members: BTreeSet<usize> = scc.iter().map(|n| graph[*n]).collect();
        // Walk the cycle from the first stage in file order, following edges inside the SCC.
        let Some(&start) = members.first() else {
            continue;
        };
        let mut names = vec![stages[start].name.clone()];
        let mut current = start;
        let mut first_edge = None;
        for _ in 0..members.len() {
            let next = graph
                .edges_directed(nodes[current], Direction::Incoming)
                .filter(|e| members.contains(&graph[petgraph::visit::EdgeRef::source(e)]))
                .min_by_key(|e| e.weight().start);
            let Some(edge) = next else { break };
            if first_edge.is_none() {
                first_edge = Some((stages[current].name.clone(), edge.weight().clone()));
            }
            current = graph[petgraph::visit::EdgeRef::source(&edge)];
            names.push(stages[current].name.clone());
            if current == start {
                break;
            }
        }
        if let Some(first_edge) = first_edge {
            cycles.push(Cycle { names, first_edge });
        }
    }
    cycles
}
