//! A Job's `podFailurePolicy`: rules that decide, from how a failed pod's containers exited,
//! whether the failure fails the whole Job at once, is ignored (the pod is replaced without
//! counting toward `backoffLimit`), or counts as usual — the Job controller's
//! `matchPodFailurePolicy` (pkg/controller/job/pod_failure_policy.go).

use k8s_openapi::api::core::v1::PodStatus;
use serde_yaml_ng::Value;

use super::Problem;

/// What a matching rule does with a failed pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// The Job fails at once (`PodFailurePolicy`), its other pods stopped.
    FailJob,
    /// The pod is replaced; the failure does not count toward `backoffLimit`.
    Ignore,
    /// The failure counts toward `backoffLimit`, as without a policy.
    Count,
    /// The pod's index fails at once and is not retried (`backoffLimitPerIndex` jobs only).
    FailIndex,
}

/// One rule of `podFailurePolicy.rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRule {
    action: FailureAction,
    /// `onExitCodes`; a rule with `onPodConditions` instead has none, and matches no pod here:
    /// one host never disrupts a pod (no `DisruptionTarget` condition).
    exit_codes: Option<ExitCodes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ExitCodes {
    container: Option<String>,
    /// `operator: In` (else `NotIn`).
    inside: bool,
    values: Vec<i32>,
}

/// The action of the first rule of `rules` that matches a pod that ended as `status`, with a
/// description of the match for the Job's condition message; `None`: no rule matches (the
/// failure counts).
pub(crate) fn match_rules(
    rules: &[FailureRule],
    status: &PodStatus,
) -> Option<(FailureAction, String)> {
    rules.iter().enumerate().find_map(|(index, rule)| {
        let codes = rule.exit_codes.as_ref()?;
        // Containers that exited 0 never match (`matchOnExitCodes`), init containers first.
        let statuses = (status.init_container_statuses.iter().flatten())
            .chain(status.container_statuses.iter().flatten());
        statuses
            .filter(|container| {
                codes
                    .container
                    .as_ref()
                    .is_none_or(|c| *c == container.name)
            })
            .find_map(|container| {
                let code = container.state.as_ref()?.terminated.as_ref()?.exit_code;
                (code != 0 && codes.values.contains(&code) == codes.inside).then(|| {
                    let action = rule.action;
                    (
                        action,
                        format!(
                            "Container {} failed with exit code {code} matching {action:?} rule \
                             at index {index}",
                            container.name
                        ),
                    )
                })
            })
    })
}

/// Reads `spec.podFailurePolicy` of a Job (given as its known spec) whose pods restart `Never`
/// or not (`restart_never`), with a `backoffLimitPerIndex` or not (`per_index`), checked as the
/// API server checks it (`validatePodFailurePolicy`).
pub(super) fn parse(
    spec: &Value,
    restart_never: bool,
    per_index: bool,
    problems: &mut Vec<Problem>,
) -> Vec<FailureRule> {
    let Some(policy) = spec.get("podFailurePolicy") else {
        return Vec::new();
    };
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    if !restart_never {
        problem(
            "spec.template.spec.restartPolicy".into(),
            "must be `Never` with a podFailurePolicy, as Kubernetes requires".into(),
        );
    }
    let mut rules = Vec::new();
    let listed = policy.get("rules").and_then(Value::as_sequence);
    for (index, rule) in listed.into_iter().flatten().enumerate() {
        let at = format!("spec.podFailurePolicy.rules[{index}]");
        let action = match rule.get("action").and_then(Value::as_str) {
            Some("FailJob") => FailureAction::FailJob,
            Some("Ignore") => FailureAction::Ignore,
            Some("Count") => FailureAction::Count,
            Some("FailIndex") if per_index => FailureAction::FailIndex,
            Some("FailIndex") => {
                problem(
                    format!("{at}.action"),
                    "`FailIndex` needs `backoffLimitPerIndex` (as Kubernetes requires); use \
                     FailJob, Ignore or Count"
                        .into(),
                );
                continue;
            }
            other => {
                problem(
                    format!("{at}.action"),
                    format!(
                        "{} is not an action: FailJob, FailIndex, Ignore or Count",
                        other.map_or("nothing".to_string(), |a| format!("`{a}`"))
                    ),
                );
                continue;
            }
        };
        let on_exit_codes = rule.get("onExitCodes");
        let on_conditions = rule.get("onPodConditions");
        if on_exit_codes.is_some() == on_conditions.is_some() {
            problem(
                at.clone(),
                "give exactly one of `onExitCodes` and `onPodConditions`".into(),
            );
            continue;
        }
        let Some(codes) = on_exit_codes else {
            rules.push(FailureRule {
                action,
                exit_codes: None,
            });
            continue;
        };
        let inside = match codes.get("operator").and_then(Value::as_str) {
            Some("In") => true,
            Some("NotIn") => false,
            other => {
                problem(
                    format!("{at}.onExitCodes.operator"),
                    format!(
                        "{} is not an operator: In or NotIn",
                        other.map_or("nothing".to_string(), |o| format!("`{o}`"))
                    ),
                );
                continue;
            }
        };
        let values: Vec<i32> = (codes.get("values").and_then(Value::as_sequence))
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_i64().and_then(|v| i32::try_from(v).ok()))
            .collect();
        if values.is_empty() {
            problem(
                format!("{at}.onExitCodes.values"),
                "required: the exit codes the rule is about".into(),
            );
        }
        if inside && values.contains(&0) {
            problem(
                format!("{at}.onExitCodes.values"),
                "must not contain 0 with operator `In`: a container that exits 0 has not failed"
                    .into(),
            );
        }
        rules.push(FailureRule {
            action,
            exit_codes: Some(ExitCodes {
                container: codes
                    .get("containerName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                inside,
                values,
            }),
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};

    fn ended(codes: &[(&str, i32)]) -> PodStatus {
        PodStatus {
            container_statuses: Some(
                codes
                    .iter()
                    .map(|(name, code)| ContainerStatus {
                        name: name.to_string(),
                        state: Some(ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: *code,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn rules(yaml: &str) -> (Vec<FailureRule>, Vec<Problem>) {
        let spec: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        (parse(&spec, true, false, &mut problems), problems)
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let (rules, problems) = rules(
            "podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes: {containerName: main, operator: In, values: [42]}
    - action: Ignore
      onExitCodes: {operator: In, values: [1, 2]}
    - action: Count
      onPodConditions: [{type: DisruptionTarget}]
",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let action = |codes: &[(&str, i32)]| match_rules(&rules, &ended(codes)).map(|(a, _)| a);
        assert_eq!(action(&[("main", 42)]), Some(FailureAction::FailJob));
        assert_eq!(action(&[("side", 42)]), None, "42 from another container");
        assert_eq!(action(&[("main", 1)]), Some(FailureAction::Ignore));
        assert_eq!(
            action(&[("main", 0), ("side", 2)]),
            Some(FailureAction::Ignore)
        );
        assert_eq!(action(&[("main", 3)]), None);
        let (_, message) = match_rules(&rules, &ended(&[("main", 42)])).unwrap();
        assert_eq!(
            message,
            "Container main failed with exit code 42 matching FailJob rule at index 0"
        );
    }

    #[test]
    fn not_in_matches_the_other_failures_only() {
        let (rules, _) = rules(
            "podFailurePolicy: {rules: [{action: FailJob, onExitCodes: {operator: NotIn, values: [1]}}]}",
        );
        let action = |code| match_rules(&rules, &ended(&[("main", code)])).map(|(a, _)| a);
        assert_eq!(action(1), None);
        assert_eq!(action(0), None, "exit 0 never matches");
        assert_eq!(action(7), Some(FailureAction::FailJob));
    }

    #[test]
    fn what_kubernetes_refuses_is_refused() {
        let (_, problems) = rules(
            "podFailurePolicy:
  rules:
    - {action: FailIndex, onExitCodes: {operator: In, values: [1]}}
    - {action: Ignore, onExitCodes: {operator: In, values: [0]}}
    - {action: Count}
    - {action: Explode, onExitCodes: {operator: In, values: [1]}}
",
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.podFailurePolicy.rules[0].action",
                "spec.podFailurePolicy.rules[1].onExitCodes.values",
                "spec.podFailurePolicy.rules[2]",
                "spec.podFailurePolicy.rules[3].action",
            ]
        );
    }
}
