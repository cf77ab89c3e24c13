//! Which Compose tool a rollout uses: the one that made the project.
//!
//! v1 and v2 hash a service's config differently and name containers
//! differently, so the containers a rollout creates through one tool are
//! foreign to the other: after a rollout through v2 of a project brought up
//! with `docker-compose`, the operator's next `docker-compose up -d`
//! recreates every new container (the very downtime the tool exists to
//! avoid). So the tool is the one the project's running containers name in
//! their `com.docker.compose.version` label (1.x: `docker-compose`; 2.x and
//! later: `docker compose`). Only when the project runs nothing yet does what
//! is installed decide, v2 first. `ROLLOUT_COMPOSE` overrides both.
//!
//! A container counts for a tool only under the name that tool gives the
//! project ([`ProjectNames`]: the tools' naming rules differ), so a project
//! another configuration of the other tool made under a similar name is not
//! taken for this one. A project whose containers were made by a tool that
//! is not installed, or by both tools, is refused before anything changes,
//! saying what was found and what to do ([`ToolRefusal`], exit 2).

use super::installed::{Installed, ToolLookup};
use super::Flavour;
use crate::labels;
use crate::Engine;
use rollout_compose::ProjectNames;
use rollout_core::BackendError;
use std::collections::{BTreeMap, HashMap};

/// The variable that names the Compose tool and overrides the choice.
pub const SETTING_ENV: &str = "ROLLOUT_COMPOSE";

/// A running container of the project, as its labels describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The container's name.
    pub container: String,
    /// Its `com.docker.compose.project`.
    pub project: String,
    /// Its `com.docker.compose.service`.
    pub service: String,
    /// Its `com.docker.compose.version`: the version of the tool that made it.
    pub version: Option<String>,
}

impl Made {
    /// The tool its version label names.
    pub fn flavour(&self) -> Option<Flavour> {
        self.version.as_deref().and_then(flavour_of_version)
    }
}

/// The tool a `com.docker.compose.version` value names: 1.x is
/// `docker-compose`, 2.x and later `docker compose`.
pub fn flavour_of_version(version: &str) -> Option<Flavour> {
    let version = version.trim().trim_start_matches(['v', 'V']);
    let major: u32 = version.split('.').next()?.parse().ok()?;
    match major {
        0 => None,
        1 => Some(Flavour::V1),
        _ => Some(Flavour::V2),
    }
}

/// The value of `ROLLOUT_COMPOSE` as a tool.
pub fn flavour_of_setting(value: &str) -> Option<Flavour> {
    match value.trim() {
        "v1" | "1" | "docker-compose" => Some(Flavour::V1),
        "v2" | "2" | "docker compose" => Some(Flavour::V2),
        _ => None,
    }
}

/// Why the tool was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `ROLLOUT_COMPOSE` named it.
    Setting(String),
    /// The project's running containers were made by it.
    MadeBy {
        /// How many containers.
        containers: usize,
        /// The versions on their labels.
        versions: Vec<String>,
    },
    /// The project runs nothing yet; this is the installed tool preferred.
    NothingRuns,
    /// No tool is installed, and the engine has not been asked yet which tool made the
    /// project's containers: the project is read by the rules of the default tool until it
    /// is (a project made by a tool that is not installed is then refused with that tool's
    /// name, more useful than "none is installed"). Never used to run a tool.
    Provisional {
        /// The refusal that stands if the engine does not change it.
        refusal: Box<ToolRefusal>,
    },
}

/// The Compose tool a rollout uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolChoice {
    /// The tool.
    pub flavour: Flavour,
    /// Where it was found.
    pub installed: Installed,
    /// Why it.
    pub reason: Reason,
    /// What the operator should know (an override against the containers).
    pub warnings: Vec<String>,
}

impl std::fmt::Display for ToolChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.installed)?;
        match &self.reason {
            Reason::Setting(v) => write!(f, "{SETTING_ENV}={v}"),
            Reason::MadeBy {
                containers,
                versions,
            } => write!(
                f,
                "the project's {containers} running container{} were made by Compose {}",
                if *containers == 1 { "" } else { "s" },
                versions.join(", ")
            ),
            Reason::NothingRuns => f.write_str("the project runs nothing yet"),
            Reason::Provisional { .. } => {
                f.write_str("no tool is installed; the engine is not asked yet")
            }
        }
    }
}

impl ToolChoice {
    /// The choice to read the project with before the engine is asked, when `refusal` says
    /// that no tool is installed (see [`Reason::Provisional`]); `None` for any other refusal.
    pub fn provisional(refusal: &ToolRefusal) -> Option<ToolChoice> {
        matches!(refusal, ToolRefusal::NoTool { .. }).then(|| {
            let flavour = Flavour::default();
            ToolChoice {
                flavour,
                installed: Installed {
                    flavour,
                    path: None,
                    version: None,
                },
                reason: Reason::Provisional {
                    refusal: Box::new(refusal.clone()),
                },
                warnings: Vec::new(),
            }
        })
    }
}

/// Why no Compose tool can roll the project out. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolRefusal {
    /// `ROLLOUT_COMPOSE` names no tool.
    #[error("{SETTING_ENV}={value:?} names no Compose tool\nhint: set {SETTING_ENV}=v1 (docker-compose) or {SETTING_ENV}=v2 (docker compose), or unset it to use the tool that made the project")]
    UnknownSetting {
        /// The value.
        value: String,
    },
    /// `ROLLOUT_COMPOSE` names a tool that is not installed.
    #[error("{SETTING_ENV}={value} asks for {}, which is not installed: {why}\nhint: install it, or unset {SETTING_ENV} to use the tool that made the project", flavour.command())]
    SettingNotInstalled {
        /// The value.
        value: String,
        /// The tool it names.
        flavour: Flavour,
        /// Why it is not found.
        why: String,
    },
    /// The project's containers were made by a tool that is not installed.
    #[error("the running containers of project {project} ({found}) were made by Compose {versions} ({}), which is not installed here: {why}\nhint: {}", flavour.command(), missing_hint(*flavour))]
    MadeByMissing {
        /// The project.
        project: String,
        /// The tool that made them.
        flavour: Flavour,
        /// The versions on their labels.
        versions: String,
        /// The containers.
        found: String,
        /// Why the tool is not found.
        why: String,
    },
    /// The project's containers were made by both tools.
    #[error("the running containers of project {project} were made by both Compose tools: {v1} by docker-compose (Compose {v1_versions}), {v2} by docker compose (Compose {v2_versions})\nhint: bring the project under one tool first: `docker compose up -d` (or `docker-compose up -d`) recreates the other tool's containers; or set {SETTING_ENV}=v1 or v2 to choose")]
    Mixed {
        /// The project (as v2 names it, else as v1 does).
        project: String,
        /// The containers docker-compose made.
        v1: String,
        /// Their versions.
        v1_versions: String,
        /// The containers docker compose made.
        v2: String,
        /// Their versions.
        v2_versions: String,
    },
    /// No Compose tool is installed.
    #[error("no Compose tool is installed: {why_v2}; {why_v1}\nhint: install the docker compose plugin (or docker-compose), or name one with {SETTING_ENV}")]
    NoTool {
        /// Why v2 is not found.
        why_v2: String,
        /// Why v1 is not found.
        why_v1: String,
    },
}

fn missing_hint(made_by: Flavour) -> String {
    let (other, other_setting) = match made_by {
        Flavour::V1 => (Flavour::V2, "v2"),
        Flavour::V2 => (Flavour::V1, "v1"),
    };
    format!(
        "install {} (the tool the project is used with), or set {SETTING_ENV}={other_setting} to roll out with {} anyway (its containers then differ from the others: `{} up -d` recreates those)",
        made_by.command(),
        other.command(),
        other.command()
    )
}

/// The project's running containers, by the tool that made them: only the
/// containers under the name that tool gives the project count, and one-off
/// containers (`compose run`) never do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    by_tool: BTreeMap<Flavour, Vec<Made>>,
}

impl Evidence {
    /// Sorts `made` (the running containers labelled with one of `names`).
    pub fn new(names: &ProjectNames, made: &[Made]) -> Evidence {
        let mut by_tool: BTreeMap<Flavour, Vec<Made>> = BTreeMap::new();
        for m in made {
            let Some(flavour) = m.flavour() else {
                continue;
            };
            if names.of(flavour) == Some(m.project.as_str()) {
                by_tool.entry(flavour).or_default().push(m.clone());
            }
        }
        Evidence { by_tool }
    }

    /// The tools that made the project's containers, v1 first.
    pub fn tools(&self) -> Vec<Flavour> {
        self.by_tool.keys().copied().collect()
    }

    fn of(&self, flavour: Flavour) -> &[Made] {
        self.by_tool.get(&flavour).map(Vec::as_slice).unwrap_or(&[])
    }

    fn versions(&self, flavour: Flavour) -> Vec<String> {
        let mut v: Vec<String> = self
            .of(flavour)
            .iter()
            .filter_map(|m| m.version.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// `app-1, app-2, nginx-1` (the first few, then how many more).
    fn containers(&self, flavour: Flavour) -> String {
        let all = self.of(flavour);
        let mut names: Vec<&str> = all.iter().map(|m| m.container.as_str()).collect();
        names.sort();
        let shown = names.iter().take(4).copied().collect::<Vec<_>>().join(", ");
        match all.len() {
            n if n > 4 => format!("{shown} and {} more", n - 4),
            _ => shown,
        }
    }
}

/// Chooses the tool from what the project runs and what is installed
/// (`v1`, `v2`: each found, or why not); `setting` is `ROLLOUT_COMPOSE`.
/// Pure: [`choose_tool`] gathers its inputs.
pub fn decide(
    setting: Option<&str>,
    names: &ProjectNames,
    evidence: &Evidence,
    v1: &Result<Installed, String>,
    v2: &Result<Installed, String>,
) -> Result<ToolChoice, ToolRefusal> {
    let installed = |f: Flavour| match f {
        Flavour::V1 => v1,
        Flavour::V2 => v2,
    };
    let tools = evidence.tools();
    if let Some(value) = setting.filter(|v| !v.trim().is_empty()) {
        let flavour = flavour_of_setting(value).ok_or_else(|| ToolRefusal::UnknownSetting {
            value: value.to_string(),
        })?;
        let found = installed(flavour)
            .clone()
            .map_err(|why| ToolRefusal::SettingNotInstalled {
                value: value.to_string(),
                flavour,
                why,
            })?;
        let warnings = tools
            .iter()
            .filter(|t| **t != flavour)
            .map(|t| {
                format!(
                    "{SETTING_ENV}={value} overrides the tool that made the project's containers ({}: Compose {}): the containers this rollout creates differ from those, and a later `{} up -d` recreates them",
                    evidence.containers(*t),
                    evidence.versions(*t).join(", "),
                    t.command()
                )
            })
            .collect();
        return Ok(ToolChoice {
            flavour,
            installed: found,
            reason: Reason::Setting(value.to_string()),
            warnings,
        });
    }
    match tools.as_slice() {
        [] => {
            let found = v2.clone().or_else(|why_v2| {
                v1.clone()
                    .map_err(|why_v1| ToolRefusal::NoTool { why_v2, why_v1 })
            })?;
            Ok(ToolChoice {
                flavour: found.flavour,
                installed: found,
                reason: Reason::NothingRuns,
                warnings: Vec::new(),
            })
        }
        [flavour] => {
            let flavour = *flavour;
            let found = installed(flavour)
                .clone()
                .map_err(|why| ToolRefusal::MadeByMissing {
                    project: names.of(flavour).unwrap_or_default().to_string(),
                    flavour,
                    versions: evidence.versions(flavour).join(", "),
                    found: evidence.containers(flavour),
                    why,
                })?;
            Ok(ToolChoice {
                flavour,
                installed: found,
                reason: Reason::MadeBy {
                    containers: evidence.of(flavour).len(),
                    versions: evidence.versions(flavour),
                },
                warnings: Vec::new(),
            })
        }
        _ => Err(ToolRefusal::Mixed {
            project: names
                .of(Flavour::V2)
                .or(names.of(Flavour::V1))
                .unwrap_or_default()
                .to_string(),
            v1: evidence.containers(Flavour::V1),
            v1_versions: evidence.versions(Flavour::V1).join(", "),
            v2: evidence.containers(Flavour::V2),
            v2_versions: evidence.versions(Flavour::V2).join(", "),
        }),
    }
}

/// The running containers labelled with one of `names` (one-off containers
/// left out), read from the engine.
pub async fn project_containers(
    engine: &Engine,
    names: &ProjectNames,
) -> Result<Vec<Made>, BackendError> {
    let mut made = Vec::new();
    for name in names.distinct() {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}={name}", labels::PROJECT)],
        )]);
        let found = engine.list_containers(filters, false).await?;
        for c in found {
            let labels = c.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned();
            if label(labels::ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                continue;
            }
            made.push(Made {
                container: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                project: label(labels::PROJECT).unwrap_or_default(),
                service: label(labels::SERVICE).unwrap_or_default(),
                version: label(labels::COMPOSE_VERSION),
            });
        }
    }
    Ok(made)
}

/// Chooses the tool for the project named `names`, whose running
/// containers are `made` (empty when the engine was not asked), from what
/// `lookup` finds installed and `ROLLOUT_COMPOSE`.
pub async fn choose_tool(
    names: &ProjectNames,
    made: &[Made],
    lookup: &ToolLookup,
) -> Result<ToolChoice, ToolRefusal> {
    let setting = std::env::var(SETTING_ENV).ok();
    let evidence = Evidence::new(names, made);
    let v2 = lookup.v2().await;
    let v1 = lookup.v1().await;
    decide(setting.as_deref(), names, &evidence, &v1, &v2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn made(container: &str, project: &str, version: &str) -> Made {
        Made {
            container: container.into(),
            project: project.into(),
            service: container.split(['-', '_']).nth(1).unwrap_or("app").into(),
            version: Some(version.into()),
        }
    }

    fn names(v1: &str, v2: &str) -> ProjectNames {
        ProjectNames {
            v1: Some(v1.into()),
            v2: Some(v2.into()),
        }
    }

    fn v1() -> Result<Installed, String> {
        Ok(Installed {
            flavour: Flavour::V1,
            path: Some(PathBuf::from("/usr/bin/docker-compose")),
            version: None,
        })
    }

    fn v2() -> Result<Installed, String> {
        Ok(Installed {
            flavour: Flavour::V2,
            path: Some(PathBuf::from(
                "/usr/local/lib/docker/cli-plugins/docker-compose",
            )),
            version: Some("2.26.1-4".into()),
        })
    }

    fn missing() -> Result<Installed, String> {
        Err("not here".into())
    }

    fn shop_v1() -> Vec<Made> {
        vec![
            made("shop_app_1", "shop", "1.29.2"),
            made("shop_app_2", "shop", "1.29.2"),
            made("shop_nginx_1", "shop", "1.29.2"),
        ]
    }

    fn shop_v2() -> Vec<Made> {
        vec![
            made("shop-app-1", "shop", "2.26.1-4"),
            made("shop-nginx-1", "shop", "2.26.1-4"),
        ]
    }

    fn choose(
        setting: Option<&str>,
        made: &[Made],
        v1: Result<Installed, String>,
        v2: Result<Installed, String>,
    ) -> Result<ToolChoice, ToolRefusal> {
        let n = names("shop", "shop");
        decide(setting, &n, &Evidence::new(&n, made), &v1, &v2)
    }

    #[test]
    fn versions_name_the_tools() {
        assert_eq!(flavour_of_version("1.29.2"), Some(Flavour::V1));
        assert_eq!(flavour_of_version("1.21.0"), Some(Flavour::V1));
        assert_eq!(flavour_of_version("2.26.1-4"), Some(Flavour::V2));
        assert_eq!(flavour_of_version("v2.29.7"), Some(Flavour::V2));
        assert_eq!(flavour_of_version("5.0.0"), Some(Flavour::V2));
        assert_eq!(flavour_of_version(""), None);
        assert_eq!(flavour_of_version("latest"), None);
        assert_eq!(flavour_of_version("0.9"), None);
        assert_eq!(flavour_of_setting("v1"), Some(Flavour::V1));
        assert_eq!(flavour_of_setting("docker-compose"), Some(Flavour::V1));
        assert_eq!(flavour_of_setting("docker compose"), Some(Flavour::V2));
        assert_eq!(flavour_of_setting("v3"), None);
    }

    #[test]
    fn the_tool_that_made_the_containers_is_chosen_even_when_the_other_is_preferred() {
        let c = choose(None, &shop_v1(), v1(), v2()).unwrap();
        assert_eq!(c.flavour, Flavour::V1);
        assert_eq!(
            c.reason,
            Reason::MadeBy {
                containers: 3,
                versions: vec!["1.29.2".into()]
            }
        );
        assert!(c.warnings.is_empty());
        assert_eq!(
            c.to_string(),
            "docker-compose (/usr/bin/docker-compose): the project's 3 running containers were made by Compose 1.29.2"
        );
        let c = choose(None, &shop_v2(), v1(), v2()).unwrap();
        assert_eq!(c.flavour, Flavour::V2);
        let c = choose(None, &shop_v2(), missing(), v2()).unwrap();
        assert_eq!(c.flavour, Flavour::V2);
    }

    #[test]
    fn a_project_that_runs_nothing_takes_v2_first() {
        let c = choose(None, &[], v1(), v2()).unwrap();
        assert_eq!((c.flavour, c.reason), (Flavour::V2, Reason::NothingRuns));
        let c = choose(None, &[], v1(), missing()).unwrap();
        assert_eq!(c.flavour, Flavour::V1);
        assert!(
            c.to_string().ends_with("the project runs nothing yet"),
            "{c}"
        );
        let e = choose(None, &[], Err("no v1".into()), Err("no v2".into())).unwrap_err();
        assert_eq!(
            e,
            ToolRefusal::NoTool {
                why_v2: "no v2".into(),
                why_v1: "no v1".into()
            }
        );
        assert!(e.to_string().contains("\nhint: "), "{e}");
        // Before the engine is asked, "none is installed" is only provisional: the project is
        // read by the default tool's rules, and the refusal is kept for when nothing changes it.
        let p = ToolChoice::provisional(&e).unwrap();
        assert_eq!(p.flavour, Flavour::default());
        assert_eq!(
            p.reason,
            Reason::Provisional {
                refusal: Box::new(e)
            }
        );
        // Only that refusal: the others stand as they are.
        let unknown = ToolRefusal::UnknownSetting { value: "v3".into() };
        assert_eq!(ToolChoice::provisional(&unknown), None);
    }

    #[test]
    fn containers_made_by_a_tool_that_is_not_installed_are_refused_with_what_to_do() {
        let e = choose(None, &shop_v1(), missing(), v2()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("the running containers of project shop (shop_app_1, shop_app_2, shop_nginx_1) were made by Compose 1.29.2 (docker-compose), which is not installed here: not here\nhint: install docker-compose"),
            "{text}"
        );
        assert!(text.contains("ROLLOUT_COMPOSE=v2"), "{text}");
        let e = choose(None, &shop_v2(), v1(), missing()).unwrap_err();
        assert!(
            matches!(&e, ToolRefusal::MadeByMissing { flavour: Flavour::V2, versions, .. } if versions == "2.26.1-4"),
            "{e:?}"
        );
        assert!(e.to_string().contains("ROLLOUT_COMPOSE=v1"), "{e}");
    }

    #[test]
    fn containers_of_both_tools_are_refused() {
        let mut both = shop_v1();
        both.extend(shop_v2());
        let e = choose(None, &both, v1(), v2()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("the running containers of project shop were made by both Compose tools: shop_app_1, shop_app_2, shop_nginx_1 by docker-compose (Compose 1.29.2), shop-app-1, shop-nginx-1 by docker compose (Compose 2.26.1-4)\nhint: "),
            "{text}"
        );
    }

    #[test]
    fn rollout_compose_overrides_and_says_what_it_overrides() {
        let c = choose(Some("v2"), &shop_v1(), v1(), v2()).unwrap();
        assert_eq!(c.flavour, Flavour::V2);
        assert_eq!(c.reason, Reason::Setting("v2".into()));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].starts_with("ROLLOUT_COMPOSE=v2 overrides the tool that made the project's containers (shop_app_1, shop_app_2, shop_nginx_1: Compose 1.29.2)"),
            "{}",
            c.warnings[0]
        );
        // Even with both tools' containers, and with nothing running.
        let mut both = shop_v1();
        both.extend(shop_v2());
        assert_eq!(
            choose(Some("docker-compose"), &both, v1(), v2())
                .unwrap()
                .flavour,
            Flavour::V1
        );
        let c = choose(Some("v1"), &[], v1(), v2()).unwrap();
        assert!(c.warnings.is_empty());
        // An empty value is no setting.
        assert_eq!(
            choose(Some(""), &shop_v1(), v1(), v2()).unwrap().flavour,
            Flavour::V1
        );
        let e = choose(Some("v3"), &[], v1(), v2()).unwrap_err();
        assert_eq!(e, ToolRefusal::UnknownSetting { value: "v3".into() });
        let e = choose(Some("v1"), &[], missing(), v2()).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "ROLLOUT_COMPOSE=v1 asks for docker-compose, which is not installed: not here"
            ),
            "{e}"
        );
    }

    #[test]
    fn containers_count_only_under_the_name_their_tool_gives_the_project() {
        // `name: front` in the file: v2 calls the project front, v1 calls it
        // after the folder. A v2 project that happens to be called like the
        // folder is another project: it does not decide.
        let n = names("shopdir", "front");
        let others = vec![
            made("shopdir-app-1", "shopdir", "2.26.1-4"),
            made("front_app_1", "front", "1.29.2"),
        ];
        let evidence = Evidence::new(&n, &others);
        assert!(evidence.tools().is_empty());
        let c = decide(None, &n, &evidence, &v1(), &v2()).unwrap();
        assert_eq!(c.reason, Reason::NothingRuns);
        // Under its own name it does.
        let front = vec![made("front-app-1", "front", "2.26.1-4")];
        let evidence = Evidence::new(&n, &front);
        assert_eq!(evidence.tools(), [Flavour::V2]);
        // Containers without a version label decide nothing.
        let unlabelled = Made {
            version: None,
            ..front[0].clone()
        };
        assert!(Evidence::new(&n, &[unlabelled]).tools().is_empty());
    }

    #[test]
    fn many_containers_are_summed_up() {
        let made: Vec<Made> = (1..=6)
            .map(|i| made(&format!("shop_app_{i}"), "shop", "1.29.2"))
            .collect();
        let n = names("shop", "shop");
        assert_eq!(
            Evidence::new(&n, &made).containers(Flavour::V1),
            "shop_app_1, shop_app_2, shop_app_3, shop_app_4 and 2 more"
        );
    }
}
