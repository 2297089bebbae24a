//! Helm charts: the `helm template` command line, the run of the pinned `helm` binary (in a
//! scratch HOME, with no network for dependencies: charts must vendor them under `charts/`),
//! and turning Helm hooks into sync waves. Argument building and hook mapping are pure.
//!
//! # Hooks become sync waves
//!
//! Flotilla applies everything declaratively in waves and runs no hook phases, so the hooks
//! `helm template` prints are mapped onto waves the way Argo CD maps them onto its phases
//! (`pre-install`/`pre-upgrade` → PreSync, `post-install`/`post-upgrade` → PostSync, the
//! weight → the order within the phase):
//!
//! - `pre-install`, `pre-upgrade`: waves just before the chart's first wave (wave -1 when the
//!   chart sets no waves), one wave per distinct weight, lower weights first. The weight is
//!   the object's own `argocd.argoproj.io/sync-wave` if it has one, else
//!   `helm.sh/hook-weight`, else 0 (an unreadable weight counts 0, as in Helm).
//! - `post-install`, `post-upgrade`: waves just after the chart's last wave (wave 1 when the
//!   chart sets no waves), the same way.
//! - A hook listing both kinds (`pre-install,post-install`) runs before, once.
//! - `crd-install` (Helm 2): an ordinary object; CRDs are applied first anyway.
//! - `test`, `test-success`, `test-failure`, `pre-delete`, `post-delete`, `pre-rollback`,
//!   `post-rollback` and unknown events alone: skipped, since no sync runs them (Argo CD
//!   does not support them either, `post-delete` aside).
//!
//! The `helm.sh/hook`, `helm.sh/hook-weight` and `helm.sh/hook-delete-policy` annotations are
//! removed: the object becomes an ordinary object of its wave, and keeping them would claim a
//! delete policy nobody enforces.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::tool::{Tool, ToolError};
use super::{ClusterInfo, HelmParameter, RenderFailure};
use crate::manifest_files::parse_documents;
use crate::render::limits::Limits;

/// The annotation naming a Helm hook's events.
pub const HOOK: &str = "helm.sh/hook";
/// The order of hooks of one event.
pub const HOOK_WEIGHT: &str = "helm.sh/hook-weight";
/// When Helm deletes a hook; not enforced by Flotilla.
pub const HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";
/// Argo CD's wave annotation, which the agent orders by.
pub const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";

/// Where a hook goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPlacement {
    /// Before the chart's objects.
    Before,
    /// After the chart's objects.
    After,
    /// An ordinary object (`crd-install`).
    Ordinary,
    /// Not applied at all.
    Skipped,
}

/// Where an object with `helm.sh/hook: events` goes.
pub fn hook_placement(events: &str) -> HookPlacement {
    let events: Vec<&str> = events.split(',').map(str::trim).collect();
    if events
        .iter()
        .any(|e| matches!(*e, "pre-install" | "pre-upgrade"))
    {
        HookPlacement::Before
    } else if events
        .iter()
        .any(|e| matches!(*e, "post-install" | "post-upgrade"))
    {
        HookPlacement::After
    } else if events.contains(&"crd-install") {
        HookPlacement::Ordinary
    } else {
        HookPlacement::Skipped
    }
}

fn annotations(object: &Value) -> Option<&Map<String, Value>> {
    object
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
}

fn integer_annotation(object: &Value, name: &str) -> Option<i64> {
    annotations(object)?
        .get(name)?
        .as_str()?
        .trim()
        .parse()
        .ok()
}

/// Sets sync waves for Helm hooks as the module documentation describes, drops the hooks no
/// sync runs, and strips the hook annotations; other objects are returned unchanged, in order.
pub fn hooks_to_waves(objects: Vec<Value>) -> Vec<Value> {
    let placements: Vec<Option<HookPlacement>> = objects
        .iter()
        .map(|object| {
            annotations(object)
                .and_then(|a| a.get(HOOK))
                .and_then(Value::as_str)
                .map(hook_placement)
        })
        .collect();
    let ordinary_waves = objects
        .iter()
        .zip(&placements)
        .filter(|(_, p)| matches!(p, None | Some(HookPlacement::Ordinary)))
        .map(|(o, _)| integer_annotation(o, SYNC_WAVE).unwrap_or(0));
    let (first, last) = ordinary_waves
        .fold(None, |range: Option<(i64, i64)>, wave| {
            Some(range.map_or((wave, wave), |(lo, hi)| (lo.min(wave), hi.max(wave))))
        })
        .unwrap_or((0, 0));
    let weight = |object: &Value| {
        integer_annotation(object, SYNC_WAVE)
            .or_else(|| integer_annotation(object, HOOK_WEIGHT))
            .unwrap_or(0)
    };
    let distinct = |placement: HookPlacement| {
        let mut weights: Vec<i64> = objects
            .iter()
            .zip(&placements)
            .filter(|(_, p)| **p == Some(placement))
            .map(|(o, _)| weight(o))
            .collect();
        weights.sort_unstable();
        weights.dedup();
        weights
    };
    let before = distinct(HookPlacement::Before);
    let after = distinct(HookPlacement::After);
    let mut out = Vec::with_capacity(objects.len());
    for (mut object, placement) in objects.into_iter().zip(placements) {
        let Some(placement) = placement else {
            out.push(object);
            continue;
        };
        let wave = match placement {
            HookPlacement::Skipped => continue,
            HookPlacement::Ordinary => None,
            HookPlacement::Before => {
                let rank = before.iter().rev().position(|w| *w == weight(&object));
                rank.map(|r| first - 1 - r as i64)
            }
            HookPlacement::After => {
                let rank = after.iter().position(|w| *w == weight(&object));
                rank.map(|r| last + 1 + r as i64)
            }
        };
        if let Some(annotations) = object
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        {
            annotations.remove(HOOK);
            annotations.remove(HOOK_WEIGHT);
            annotations.remove(HOOK_DELETE_POLICY);
            if let Some(wave) = wave {
                annotations.insert(SYNC_WAVE.to_owned(), Value::String(wave.to_string()));
            }
        }
        out.push(object);
    }
    out
}

/// Escapes a `--set` value as Argo CD does: commas separate values for Helm, so unescaped ones
/// are escaped, except in a `{a,b}` list.
pub fn escape_set_value(value: &str) -> String {
    if value.starts_with('{') && value.ends_with('}') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut previous = None;
    for c in value.chars() {
        if c == ',' && previous != Some('\\') {
            out.push('\\');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// The validated inputs of one `helm template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateCommand<'a> {
    pub release: &'a str,
    pub chart: &'a Path,
    pub namespace: &'a str,
    pub cluster: &'a ClusterInfo,
    /// Values files in order; later ones win.
    pub values: &'a [PathBuf],
    pub parameters: &'a [HelmParameter],
}

impl TemplateCommand<'_> {
    /// `helm template RELEASE CHART --namespace NS --skip-tests --include-crds
    /// [--kube-version V] [--api-versions A]… [--values F]… [--set N=V]…`, every option in its
    /// `--flag=value` form so that no value can be read as a flag.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "template".into(),
            self.release.into(),
            self.chart.into(),
            format!("--namespace={}", self.namespace).into(),
            "--skip-tests".into(),
            "--include-crds".into(),
        ];
        if let Some(version) = &self.cluster.kube_version {
            args.push(format!("--kube-version={version}").into());
        }
        for api in &self.cluster.api_versions {
            args.push(format!("--api-versions={api}").into());
        }
        for file in self.values {
            let mut arg = OsString::from("--values=");
            arg.push(file);
            args.push(arg);
        }
        for parameter in self.parameters {
            let flag = if parameter.force_string {
                "--set-string"
            } else {
                "--set"
            };
            args.push(
                format!(
                    "{flag}={}={}",
                    parameter.name,
                    escape_set_value(&parameter.value)
                )
                .into(),
            );
        }
        args
    }
}

fn dns_name(value: &str, max: usize, dots: bool) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    value.len() <= max
        && if dots {
            value.split('.').all(label_ok)
        } else {
            label_ok(value)
        }
}

/// Checks a release name as Helm does (a DNS subdomain of at most 53 characters).
pub fn check_release_name(name: &str) -> Result<(), String> {
    if dns_name(name, 53, true) {
        Ok(())
    } else {
        Err("must be lowercase letters, digits, `-` and `.`, at most 53 characters".to_owned())
    }
}

/// Checks a namespace (a DNS label).
pub fn check_namespace(name: &str) -> Result<(), String> {
    if dns_name(name, 63, false) {
        Ok(())
    } else {
        Err("must be a DNS label: lowercase letters, digits and `-`, at most 63".to_owned())
    }
}

/// Checks a Kubernetes version such as `v1.35.4` or `1.30`.
pub fn check_kube_version(version: &str) -> Result<(), String> {
    let core = version.strip_prefix('v').unwrap_or(version);
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    if (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && version.bytes().all(|b| b.is_ascii_graphic())
    {
        Ok(())
    } else {
        Err("must look like v1.35.4".to_owned())
    }
}

/// Checks an API version such as `apps/v1` or `monitoring.coreos.com/v1/ServiceMonitor`.
pub fn check_api_version(api: &str) -> Result<(), String> {
    if !api.is_empty()
        && !api.starts_with('-')
        && api
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-'))
    {
        Ok(())
    } else {
        Err("must look like apps/v1".to_owned())
    }
}

/// Runs `helm template` and returns its objects, hooks turned into waves.
pub(super) async fn template(
    helm: &Tool,
    command: &TemplateCommand<'_>,
    scratch: &Path,
    limits: &Limits,
    chart_name: &str,
) -> Result<Vec<Value>, RenderFailure> {
    let output = match helm
        .run(
            &command.args(),
            scratch,
            limits.max_total_bytes,
            limits.timeout,
        )
        .await
    {
        Ok(output) => output,
        Err(ToolError::Failed { stderr, .. })
            if stderr.contains("missing in charts/ directory") =>
        {
            let missing = stderr
                .rsplit("directory:")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            return Err(RenderFailure::ChartDependency {
                chart: chart_name.to_owned(),
                missing,
            });
        }
        Err(error) => return Err(error.into()),
    };
    let objects =
        parse_documents(Path::new("helm template output"), &output).map_err(|reason| {
            RenderFailure::Output {
                tool: "helm",
                reason,
            }
        })?;
    Ok(hooks_to_waves(objects))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hook(name: &str, events: &str, weight: Option<&str>) -> Value {
        let mut annotations = json!({HOOK: events, HOOK_DELETE_POLICY: "hook-succeeded"});
        if let Some(weight) = weight {
            annotations[HOOK_WEIGHT] = json!(weight);
        }
        json!({"kind": "Job", "metadata": {"name": name, "annotations": annotations}})
    }

    fn object(name: &str, wave: Option<&str>) -> Value {
        match wave {
            Some(wave) => json!({"kind": "Deployment",
                "metadata": {"name": name, "annotations": {SYNC_WAVE: wave}}}),
            None => json!({"kind": "Deployment", "metadata": {"name": name}}),
        }
    }

    /// The (name, wave annotation) of each object the mapping keeps.
    fn check(input: Vec<Value>, expected: &[(&str, Option<&str>)]) {
        let output = hooks_to_waves(input);
        let got: Vec<(String, Option<String>)> = output
            .iter()
            .map(|o| {
                let annotations = annotations(o);
                assert!(
                    annotations.is_none_or(|a| !a.keys().any(|k| k.starts_with("helm.sh/hook"))),
                    "hook annotations stripped: {o}"
                );
                (
                    o["metadata"]["name"].as_str().expect("name").to_owned(),
                    annotations
                        .and_then(|a| a.get(SYNC_WAVE))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                )
            })
            .collect();
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(n, w)| ((*n).to_owned(), w.map(str::to_owned)))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn placements() {
        assert_eq!(hook_placement("pre-install"), HookPlacement::Before);
        assert_eq!(hook_placement("pre-upgrade"), HookPlacement::Before);
        assert_eq!(
            hook_placement("post-install, pre-install"),
            HookPlacement::Before
        );
        assert_eq!(hook_placement("post-upgrade"), HookPlacement::After);
        assert_eq!(hook_placement("crd-install"), HookPlacement::Ordinary);
        for skipped in [
            "test",
            "test-success",
            "test-failure",
            "pre-delete",
            "post-delete",
            "pre-rollback",
            "post-rollback",
            "bogus",
        ] {
            assert_eq!(hook_placement(skipped), HookPlacement::Skipped, "{skipped}");
        }
    }

    #[test]
    fn a_lone_pre_hook_is_wave_minus_one_and_a_post_hook_wave_one() {
        check(
            vec![
                hook("migrate", "pre-install,pre-upgrade", None),
                object("web", None),
                hook("notify", "post-install", Some("0")),
            ],
            &[
                ("migrate", Some("-1")),
                ("web", None),
                ("notify", Some("1")),
            ],
        );
    }

    #[test]
    fn weights_order_hooks_within_their_side() {
        check(
            vec![
                hook("pre-late", "pre-install", Some("5")),
                hook("pre-early", "pre-install", Some("-5")),
                hook("pre-same", "pre-upgrade", Some("5")),
                hook("post-late", "post-install", Some("10")),
                hook("post-early", "post-install", Some("x")),
                object("web", None),
            ],
            &[
                ("pre-late", Some("-1")),
                ("pre-early", Some("-2")),
                ("pre-same", Some("-1")),
                ("post-late", Some("2")),
                ("post-early", Some("1")),
                ("web", None),
            ],
        );
    }

    #[test]
    fn hooks_surround_the_charts_own_waves() {
        check(
            vec![
                object("db", Some("-3")),
                object("web", Some("4")),
                hook("migrate", "pre-install", None),
                hook("smoke", "post-install", None),
                hook("explicit", "pre-install", Some("9")),
            ],
            &[
                ("db", Some("-3")),
                ("web", Some("4")),
                ("migrate", Some("-5")),
                ("smoke", Some("5")),
                ("explicit", Some("-4")),
            ],
        );
    }

    #[test]
    fn tests_and_delete_hooks_are_skipped_and_crd_install_is_ordinary() {
        check(
            vec![
                hook("test", "test", None),
                hook("cleanup", "pre-delete", None),
                hook("crd", "crd-install", None),
                object("web", None),
            ],
            &[("crd", None), ("web", None)],
        );
    }

    #[test]
    fn set_values_escape_commas_outside_lists() {
        assert_eq!(escape_set_value("a,b"), r"a\,b");
        assert_eq!(escape_set_value(r"a\,b"), r"a\,b");
        assert_eq!(escape_set_value("{a,b}"), "{a,b}");
        assert_eq!(escape_set_value("plain"), "plain");
    }

    #[test]
    fn the_command_line_keeps_values_out_of_flag_position() {
        let cluster = ClusterInfo {
            kube_version: Some("v1.35.4".to_owned()),
            api_versions: vec!["monitoring.coreos.com/v1".to_owned()],
        };
        let values = [PathBuf::from("/repo/chart/values-prod.yaml")];
        let parameters = [
            HelmParameter {
                name: "replicaCount".to_owned(),
                value: "3".to_owned(),
                force_string: false,
            },
            HelmParameter {
                name: "tag".to_owned(),
                value: "-1".to_owned(),
                force_string: true,
            },
        ];
        let command = TemplateCommand {
            release: "web",
            chart: Path::new("/repo/chart"),
            namespace: "shop",
            cluster: &cluster,
            values: &values,
            parameters: &parameters,
        };
        let args: Vec<String> = command
            .args()
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect();
        assert_eq!(
            args,
            [
                "template",
                "web",
                "/repo/chart",
                "--namespace=shop",
                "--skip-tests",
                "--include-crds",
                "--kube-version=v1.35.4",
                "--api-versions=monitoring.coreos.com/v1",
                "--values=/repo/chart/values-prod.yaml",
                "--set=replicaCount=3",
                "--set-string=tag=-1",
            ]
        );
    }

    #[test]
    fn names_and_versions_are_checked() {
        assert!(check_release_name("podinfo-east").is_ok());
        assert!(check_release_name("-rf").is_err());
        assert!(check_release_name(&"a".repeat(54)).is_err());
        assert!(check_namespace("shop").is_ok());
        assert!(check_namespace("Shop").is_err());
        assert!(check_kube_version("v1.35.4").is_ok());
        assert!(check_kube_version("1.30").is_ok());
        assert!(check_kube_version("v1.35.0-gke.1").is_ok());
        assert!(check_kube_version("--help").is_err());
        assert!(check_api_version("apps/v1").is_ok());
        assert!(check_api_version("-x").is_err());
        assert!(check_api_version("a b").is_err());
    }
}
