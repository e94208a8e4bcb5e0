//! Successive halving: `trials` random configurations train with `budget.min`; rung k + 1 keeps
//! the best ⌊n_k / eta⌋ of rung k (ranked by objective, equal values by the objective stage's
//! key, so the ranking never depends on which trial finished first) and trains them with
//! min·eta^(k+1), capped at `budget.max`. The search ends after the rung that reached `max`, or
//! when fewer than eta trials are left to rank.
//!
//! A promoted trial differs from its lower-rung trial only in the budget param, so when the
//! stage kind declares that param extendable the executor resumes it from the lower rung's
//! checkpoint (the engine's warm start); this module only proposes.

use super::search::{random_values, short_number, Generation, SearchSpec, Trial, TrialResult};

/// Rung `g` given every trial of rungs `< g` with its result (see [`super::search::propose`]).
pub fn propose(spec: &SearchSpec, g: usize, history: &[(Trial, TrialResult)]) -> Generation {
    let Some(budget) = &spec.budget else {
        return Generation::default();
    };
    if g == 0 {
        let trials = (0..spec.trials)
            .map(|j| Trial {
                index: j,
                generation: 0,
                rung: Some(0),
                values: random_values(spec, j),
                budget: Some(budget.at_rung(0)),
                origin: format!("halving rung 0, random configuration {j}"),
                config: j,
                promoted_from: None,
            })
            .collect();
        return Generation {
            trials,
            stopped: Vec::new(),
        };
    }
    let lower: Vec<&(Trial, TrialResult)> = history
        .iter()
        .filter(|(t, _)| t.generation == g - 1)
        .collect();
    if lower.is_empty() || budget.at_rung(g - 1) >= budget.max {
        return Generation::default();
    }
    let keep = lower.len() / budget.eta as usize;
    if keep == 0 {
        return Generation::default();
    }
    let mut ranked = lower.clone();
    ranked.sort_by(|(ta, a), (tb, b)| {
        spec.goal
            .order((a.value, &a.key), (b.value, &b.key))
            .then(ta.index.cmp(&tb.index))
    });
    let cutoff = ranked[keep - 1].1.value;
    let metric = &spec.objective.metric;
    let n = ranked.len();
    let mut stopped = Vec::new();
    for (rank, (t, r)) in ranked.iter().enumerate().skip(keep) {
        let comparison = if r.value == cutoff {
            format!("ties cutoff {} and loses on key", short_number(cutoff))
        } else {
            format!("{} cutoff {}", spec.goal.worse_sign(), short_number(cutoff))
        };
        stopped.push((
            t.index,
            format!(
                "rung {}: {metric} {} {comparison}, rank {} of {n}",
                g - 1,
                short_number(r.value),
                rank + 1
            ),
        ));
    }
    let mut promoted: Vec<&Trial> = ranked[..keep].iter().map(|(t, _)| t).collect();
    promoted.sort_by_key(|t| t.index);
    let base = history.len();
    let trials = promoted
        .iter()
        .enumerate()
        .map(|(k, from)| Trial {
            index: base + k,
            generation: g,
            rung: Some(g),
            values: from.values.clone(),
            budget: Some(budget.at_rung(g)),
            origin: format!("halving rung {g}, promoted from trial {}", from.index),
            config: from.config,
            promoted_from: Some(from.index),
        })
        .collect();
    stopped.sort();
    Generation { trials, stopped }
}
