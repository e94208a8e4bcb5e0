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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::super::search::{Budget, Goal, Objective, Strategy};
    use super::super::space::{Distribution, SearchParam};
    use super::*;

    fn spec(trials: usize, min: u64, max: u64, eta: u64, goal: Goal) -> SearchSpec {
        SearchSpec {
            strategy: Strategy::Halving,
            strategy_span: 0..0,
            seed: 3,
            objective: Objective {
                stage: "q".into(),
                metric: "acc".into(),
                span: 0..0,
            },
            goal,
            trials,
            trials_span: 0..0,
            parallel: trials,
            params: vec![SearchParam {
                path: "stage.q.x".into(),
                path_span: 0..0,
                span: 0..0,
                distribution: Distribution::Uniform {
                    low: 0.0,
                    high: 1.0,
                },
            }],
            budget: Some(Budget {
                path: "stage.q.steps".into(),
                path_span: 0..0,
                min,
                min_span: 0..0,
                max,
                eta,
            }),
        }
    }

    #[test]
    fn rungs_multiply_the_budget_by_eta_up_to_max_and_count_every_trial() {
        let s = spec(27, 400, 6400, 3, Goal::Max);
        let b = s.budget.as_ref().unwrap();
        let budgets: Vec<u64> = (0..5).map(|k| b.at_rung(k)).collect();
        assert_eq!(budgets, [400, 1200, 3600, 6400, 6400]);
        assert_eq!(s.max_trials(), 27 + 9 + 3 + 1);
        assert_eq!(spec(8, 1, 100, 2, Goal::Max).max_trials(), 8 + 4 + 2 + 1);
    }

    #[test]
    fn the_best_third_is_promoted_ties_broken_by_key_and_the_rest_told_why() {
        // Trial i scores i % 4 (ties between 1, 5; 2, 6; 3, 7), keys in reverse of the index.
        let s = spec(9, 10, 90, 3, Goal::Max);
        let rung0 = propose(&s, 0, &[]).trials;
        let history: Vec<(Trial, TrialResult)> = rung0
            .into_iter()
            .map(|t| {
                let r = TrialResult {
                    value: (t.index % 4) as f64,
                    key: format!("k{}", 9 - t.index),
                };
                (t, r)
            })
            .collect();
        let next = propose(&s, 1, &history);
        // Value 3: trials 3 and 7; value 2: trials 2 and 6, and 6 has the smaller key (k3 < k7).
        let from: Vec<Option<usize>> = next.trials.iter().map(|t| t.promoted_from).collect();
        assert_eq!(from, [Some(3), Some(6), Some(7)]);
        assert!(next
            .trials
            .iter()
            .all(|t| t.budget == Some(30) && t.rung == Some(1)));
        assert_eq!(next.trials[0].index, 9);
        assert_eq!(next.trials[0].values, history[3].0.values);
        assert_eq!(
            next.trials[0].origin,
            "halving rung 1, promoted from trial 3"
        );
        let reasons: std::collections::BTreeMap<usize, String> = next.stopped.into_iter().collect();
        assert_eq!(reasons.len(), 6);
        assert_eq!(
            reasons[&2],
            "rung 0: acc 2 ties cutoff 2 and loses on key, rank 4 of 9"
        );
        assert_eq!(reasons[&0], "rung 0: acc 0 < cutoff 2, rank 9 of 9");
        // Under `min`, the lowest values go on.
        let s = spec(9, 10, 90, 3, Goal::Min);
        let next = propose(&s, 1, &history);
        let from: Vec<Option<usize>> = next.trials.iter().map(|t| t.promoted_from).collect();
        assert_eq!(from, [Some(0), Some(4), Some(8)]);
        // The rung that reached `max` is the last.
        let mut all = history.clone();
        for (k, t) in propose(&spec(9, 10, 30, 3, Goal::Max), 1, &history)
            .trials
            .into_iter()
            .enumerate()
        {
            all.push((
                t,
                TrialResult {
                    value: k as f64,
                    key: String::new(),
                },
            ));
        }
        assert!(propose(&spec(9, 10, 30, 3, Goal::Max), 2, &all)
            .trials
            .is_empty());
    }
}
