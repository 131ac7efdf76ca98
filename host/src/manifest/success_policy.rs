//! A Job's `successPolicy`: rules that declare an Indexed Job succeeded before all its indexes
//! have — once given indexes (`succeededIndexes`), or a number of them (`succeededCount`), have
//! succeeded — as the Job controller's `matchSuccessPolicy` (pkg/controller/job/
//! success_policy.go) decides, checked as the API server checks it (`validateSuccessPolicy`).

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::Problem;

/// One rule of `successPolicy.rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessRule {
    /// `succeededIndexes`, as inclusive intervals in ascending order.
    indexes: Option<Vec<(u32, u32)>>,
    /// `succeededCount`.
    count: Option<u32>,
}

/// The index of the first rule of `rules` that the succeeded indexes `succeeded` satisfy.
pub(crate) fn match_success_policy(
    rules: &[SuccessRule],
    succeeded: &BTreeSet<u32>,
) -> Option<usize> {
    if succeeded.is_empty() {
        return None;
    }
    rules.iter().position(|rule| match &rule.indexes {
        Some(intervals) => {
            let required = intervals
                .iter()
                .map(|(from, to)| (to - from + 1) as usize)
                .sum();
            let done = intervals
                .iter()
                .map(|(from, to)| succeeded.range(from..=to).count())
                .sum::<usize>();
            done >= rule.count.map_or(required, |count| count as usize)
        }
        None => rule
            .count
            .is_some_and(|count| succeeded.len() >= count as usize),
    })
}

/// Reads `spec.successPolicy` of a Job (given as its known spec) of `completions` indexes
/// (`None`: not an Indexed Job, which may have no success policy).
pub(super) fn parse(
    spec: &Value,
    completions: Option<u32>,
    problems: &mut Vec<Problem>,
) -> Vec<SuccessRule> {
    let Some(policy) = spec.get("successPolicy") else {
        return Vec::new();
    };
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    let Some(completions) = completions else {
        problem(
            "spec.successPolicy".into(),
            "requires `completionMode: Indexed` (as Kubernetes requires)".into(),
        );
        return Vec::new();
    };
    let listed = policy.get("rules").and_then(Value::as_sequence);
    let listed: Vec<&Value> = listed.into_iter().flatten().collect();
    if listed.is_empty() || listed.len() > 20 {
        problem(
            "spec.successPolicy.rules".into(),
            format!("give 1 to 20 rules, not {}", listed.len()),
        );
    }
    let mut rules = Vec::new();
    for (index, rule) in listed.into_iter().enumerate() {
        let at = format!("spec.successPolicy.rules[{index}]");
        let indexes = match rule.get("succeededIndexes").map(Value::as_str) {
            None => None,
            Some(Some(text)) => match parse_intervals(text, completions) {
                Ok(intervals) => Some(intervals),
                Err(why) => {
                    problem(format!("{at}.succeededIndexes"), why);
                    continue;
                }
            },
            Some(None) => {
                problem(
                    format!("{at}.succeededIndexes"),
                    "must be a string of indexes and ranges, as `0,2-4`".into(),
                );
                continue;
            }
        };
        let count = match rule.get("succeededCount").map(Value::as_i64) {
            None => None,
            Some(Some(n)) if n >= 1 && n <= i64::from(completions) => Some(n as u32),
            Some(_) => {
                problem(
                    format!("{at}.succeededCount"),
                    format!("must be 1 to `completions` ({completions})"),
                );
                continue;
            }
        };
        if indexes.is_none() && count.is_none() {
            problem(
                at.clone(),
                "give `succeededIndexes`, `succeededCount`, or both".into(),
            );
            continue;
        }
        if let (Some(intervals), Some(count)) = (&indexes, count) {
            let listed: u32 = intervals.iter().map(|(from, to)| to - from + 1).sum();
            if count > listed {
                problem(
                    format!("{at}.succeededCount"),
                    format!("{count} is more than the {listed} indexes of `succeededIndexes`"),
                );
                continue;
            }
        }
        rules.push(SuccessRule { indexes, count });
    }
    rules
}

/// `0,2-4` as intervals, ascending and apart, each index below `completions`.
fn parse_intervals(text: &str, completions: u32) -> Result<Vec<(u32, u32)>, String> {
    let mut intervals: Vec<(u32, u32)> = Vec::new();
    for part in text.split(',') {
        let bad = || format!("`{part}` is not an index or a range (as `0,2-4`)");
        let (from, to) = match part.split_once('-') {
            Some((from, to)) => (
                from.trim().parse().map_err(|_| bad())?,
                to.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let index = part.trim().parse().map_err(|_| bad())?;
                (index, index)
            }
        };
        if from > to {
            return Err(format!("`{part}`: a range goes upwards"));
        }
        if to >= completions {
            return Err(format!(
                "index {to} is not below `completions` ({completions})"
            ));
        }
        if intervals.last().is_some_and(|(_, last)| from <= *last) {
            return Err(format!(
                "`{part}`: indexes must be given in ascending order, without overlap"
            ));
        }
        intervals.push((from, to));
    }
    Ok(intervals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str, completions: Option<u32>) -> (Vec<SuccessRule>, Vec<Problem>) {
        let spec: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        (parse(&spec, completions, &mut problems), problems)
    }

    #[test]
    fn the_first_satisfied_rule_matches() {
        // The Kubernetes documentation's example: index 0 leads, or any one of 1-4 with it.
        let (rules, problems) = parsed(
            "successPolicy: {rules: [{succeededIndexes: '0,2-3', succeededCount: 2}, {succeededCount: 4}]}",
            Some(5),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let matched = |done: &[u32]| match_success_policy(&rules, &done.iter().copied().collect());
        assert_eq!(matched(&[]), None);
        assert_eq!(matched(&[0]), None);
        assert_eq!(matched(&[0, 1]), None, "1 is not among 0,2-3");
        assert_eq!(matched(&[0, 3]), Some(0));
        assert_eq!(matched(&[1, 4, 0, 2]), Some(0));
        assert_eq!(matched(&[1, 4, 2]), None);
        assert_eq!(matched(&[1, 4, 2, 0]), Some(0));
        let (only_count, _) = parsed("successPolicy: {rules: [{succeededCount: 2}]}", Some(3));
        assert_eq!(match_success_policy(&only_count, &[0, 2].into()), Some(0));
        let (all_listed, _) = parsed(
            "successPolicy: {rules: [{succeededIndexes: '1-2'}]}",
            Some(3),
        );
        assert_eq!(match_success_policy(&all_listed, &[1].into()), None);
        assert_eq!(match_success_policy(&all_listed, &[1, 2].into()), Some(0));
    }

    #[test]
    fn what_kubernetes_refuses_is_refused() {
        let (_, problems) = parsed(
            "successPolicy:
  rules:
    - {succeededIndexes: '3-1'}
    - {succeededIndexes: '0,0'}
    - {succeededIndexes: '9'}
    - {succeededCount: 0}
    - {succeededIndexes: '0-1', succeededCount: 3}
    - {}
",
            Some(5),
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.successPolicy.rules[0].succeededIndexes",
                "spec.successPolicy.rules[1].succeededIndexes",
                "spec.successPolicy.rules[2].succeededIndexes",
                "spec.successPolicy.rules[3].succeededCount",
                "spec.successPolicy.rules[4].succeededCount",
                "spec.successPolicy.rules[5]",
            ]
        );
        let (_, problems) = parsed("successPolicy: {rules: [{succeededCount: 1}]}", None);
        assert_eq!(problems[0].path, "spec.successPolicy");
    }
}
