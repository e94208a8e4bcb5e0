//! The stage graph: stages as nodes, `from` references between stages as edges (petgraph).
//!
//! Built from a resolved [`Experiment`], which is already known to be acyclic: cycles are found
//! earlier, on the raw stages, by [`crate::config::cycles`], so they can be reported as config
//! errors with the span of the offending `from` reference. Also renders Graphviz dot for
//! `vaepipe dag`.

use std::collections::{BTreeSet, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::config::{Experiment, UpstreamTarget};

pub struct StageGraph {
    graph: DiGraph<usize, ()>,
    /// Stage indices (into `Experiment::stages`) in a topological order that keeps file order
    /// where the dependencies allow.
    order: Vec<usize>,
}

impl StageGraph {
    pub fn new(experiment: &Experiment) -> StageGraph {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..experiment.stages.len())
            .map(|i| graph.add_node(i))
            .collect();
        let index: HashMap<&str, usize> = experiment
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        for (i, stage) in experiment.stages.iter().enumerate() {
            for up in stage.upstream_stages() {
                if let Some(&j) = index.get(up) {
                    graph.update_edge(nodes[j], nodes[i], ());
                }
            }
        }
        // Kahn's algorithm, always taking the earliest stage in file order that is ready.
        let mut indegree: Vec<usize> = nodes
            .iter()
            .map(|&n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for next in graph.neighbors_directed(nodes[i], Direction::Outgoing) {
                let j = graph[next];
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        StageGraph { graph, order }
    }

    /// Stage indices, upstream before downstream.
    pub fn topo_order(&self) -> &[usize] {
        &self.order
    }

    /// Direct upstream stages of stage `i`.
    pub fn upstream(&self, i: usize) -> Vec<usize> {
        self.graph
            .neighbors_directed(NodeIndex::new(i), Direction::Incoming)
            .map(|n| self.graph[n])
            .collect()
    }

    /// Direct downstream stages of stage `i`.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        self.graph
            .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
            .map(|n| self.graph[n])
            .collect()
    }

    /// `roots` and everything they transitively read from.
    pub fn with_ancestors(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = roots.to_vec();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.upstream(i));
            }
        }
        seen
    }

    /// `roots` and everything that transitively reads from them.
    pub fn with_descendants(&self, roots: &[usize]) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = roots.to_vec();
        while let Some(i) = stack.pop() {
            if seen.insert(i) {
                stack.extend(self.downstream(i));
            }
        }
        seen
    }

    /// Graphviz dot: stages as boxes labelled with their kind, inputs as cylinders, edges
    /// labelled with the role (and subpath).
    pub fn to_dot(&self, experiment: &Experiment) -> String {
        let mut out = format!("digraph {} {{\n  rankdir=LR;\n", quote(&experiment.name));
        for input in experiment.inputs.values() {
            out.push_str(&format!(
                "  {} [shape=cylinder, label={}];\n",
                quote(&format!("input.{}", input.name)),
                quote(&format!("{}\n({})", input.name, input.mode.as_str()))
            ));
        }
        for &i in &self.order {
            let s = &experiment.stages[i];
            let shape = if s.uses_accelerator {
                "box, style=bold"
            } else {
                "box"
            };
            out.push_str(&format!(
                "  {} [shape={shape}, label={}];\n",
                quote(&s.name),
                quote(&format!("{}\n{}", s.name, s.kind.kind()))
            ));
        }
        for &i in &self.order {
            let s = &experiment.stages[i];
            for u in &s.from {
                let (node, subpath) = match &u.target {
                    UpstreamTarget::Stage { name, subpath } => (name.clone(), subpath),
                    UpstreamTarget::Input { name, subpath } => (format!("input.{name}"), subpath),
                };
                let label = if subpath.is_empty() {
                    u.role.clone()
                } else {
                    format!("{} ({subpath})", u.role)
                };
                out.push_str(&format!(
                    "  {} -> {} [label={}];\n",
                    quote(&node),
                    quote(&s.name),
                    quote(&label)
                ));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn quote(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}
