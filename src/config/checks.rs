//! Rules that span connections (unique names and ids, groups that exist, `after` names that
//! exist and form no cycle), and the warnings about a configuration that is valid but
//! probably not what was meant.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;

use super::declared::ActorDraft;
use super::problem::Problem;
use super::reader::{Problems, did_you_mean};
use super::sections::{ConnectionDraft, GroupDraft};
use super::settings::{AirbyteSettings, Config, DEFAULT_INSTANCE};
use crate::airbyte::Auth;

/// Every cross-connection rule, on whatever parts of the connections were valid.
pub(super) fn connections(drafts: &[ConnectionDraft], groups: &[GroupDraft], p: &mut Problems) {
    unique(drafts, "name", |d| d.name.as_deref(), p);
    unique(drafts, "connection_id", |d| d.connection_id.as_deref(), p);

    let group_names: Vec<&str> = groups.iter().filter_map(|g| g.name.as_deref()).collect();
    for d in drafts {
        if let Some(group) = &d.group
            && !group_names.contains(&group.as_str())
        {
            p.push(Problem::new(
                format!("{}.group", d.path),
                format!(
                    "no [[groups]] entry is named {group:?}{}",
                    did_you_mean(group, group_names.iter().copied(), |n| format!("{n:?}"))
                ),
            ));
        }
    }

    let index: HashMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.name.as_deref().map(|n| (n, i)))
        .collect();
    let names: Vec<&str> = drafts.iter().filter_map(|d| d.name.as_deref()).collect();
    for d in drafts {
        for (j, target) in d.after.iter().enumerate() {
            if !index.contains_key(target.as_str()) {
                p.push(Problem::new(
                    format!("{}.after[{j}]", d.path),
                    format!(
                        "no connection is named {target:?}{}",
                        did_you_mean(target, names.iter().copied(), |n| format!("{n:?}"))
                    ),
                ));
            }
        }
    }
    cycles(drafts, &index, p);
}

/// Chooses the instance of every connection, source and destination: the one it names,
/// else the only one configured, else [`DEFAULT_INSTANCE`]. Reports a name no instance
/// has, an entry that names none among several, and a source or destination name used
/// twice on one instance.
pub(super) fn instances(
    instances: &BTreeMap<String, AirbyteSettings>,
    connections: &mut [ConnectionDraft],
    sources: &mut [ActorDraft],
    destinations: &mut [ActorDraft],
    p: &mut Problems,
) {
    let choose = |path: &str, named: Option<&String>, p: &mut Problems| -> Option<String> {
        let names = || instances.keys().map(String::as_str);
        match named {
            Some(name) if instances.contains_key(name) => Some(name.clone()),
            Some(name) => {
                p.push(Problem::new(
                    format!("{path}.instance"),
                    format!(
                        "no Airbyte instance is named {name:?}{} (the instances: {})",
                        did_you_mean(name, names(), |n| format!("{n:?}")),
                        names().collect::<Vec<_>>().join(", ")
                    ),
                ));
                None
            }
            None if instances.len() == 1 => instances.keys().next().cloned(),
            None if instances.contains_key(DEFAULT_INSTANCE) => Some(DEFAULT_INSTANCE.into()),
            None => {
                p.push(Problem::new(
                    format!("{path}.instance"),
                    format!(
                        "missing: several Airbyte instances are configured ({}) and none is \
                         named \"default\"; say which one with instance = \"...\"",
                        names().collect::<Vec<_>>().join(", ")
                    ),
                ));
                None
            }
        }
    };
    for d in connections.iter_mut() {
        d.instance = choose(&d.path, d.instance.as_ref(), p);
        if let (Some(settings), Some(instance)) = (&mut d.settings, &d.instance) {
            settings.instance.clone_from(instance);
        }
    }
    for (key, actors) in [("sources", sources), ("destinations", destinations)] {
        let mut first: HashMap<(String, String), String> = HashMap::new();
        for a in actors.iter_mut() {
            a.instance = choose(&a.path, a.instance.as_ref(), p);
            let (Some(name), Some(instance)) = (&a.name, &a.instance) else {
                continue;
            };
            if let Some(settings) = &mut a.settings {
                settings.instance.clone_from(instance);
            }
            let what = key.trim_end_matches('s');
            match first.get(&(instance.clone(), name.clone())) {
                Some(earlier) => p.push(Problem::new(
                    format!("{}.name", a.path),
                    format!(
                        "duplicate {what} name {name:?} on instance {instance:?} (also {earlier})"
                    ),
                )),
                None => {
                    first.insert((instance.clone(), name.clone()), a.path.clone());
                }
            }
        }
    }
}

/// The `source` and `destination` of each declared connection name a `[[sources]]` and a
/// `[[destinations]]` entry.
pub(super) fn declarations(
    drafts: &[ConnectionDraft],
    sources: &[ActorDraft],
    destinations: &[ActorDraft],
    p: &mut Problems,
) {
    for d in drafts.iter().filter(|d| d.declares) {
        for (key, named, actors) in [
            ("source", &d.source, sources),
            ("destination", &d.destination, destinations),
        ] {
            let Some(named) = named else { continue };
            // Only the connection's own instance counts; an instance that could not be
            // chosen was reported, and then every instance counts.
            let names: Vec<&str> = actors
                .iter()
                .filter(|a| {
                    d.instance.is_none() || a.instance.is_none() || a.instance == d.instance
                })
                .filter_map(|a| a.name.as_deref())
                .collect();
            if !names.contains(&named.as_str()) {
                let on = match &d.instance {
                    Some(instance) if instance != DEFAULT_INSTANCE => {
                        format!(" on instance {instance:?}")
                    }
                    _ => String::new(),
                };
                p.push(Problem::new(
                    format!("{}.{key}", d.path),
                    format!(
                        "no [[{key}s]] entry{on} is named {named:?}{}",
                        did_you_mean(named, names.iter().copied(), |n| format!("{n:?}"))
                    ),
                ));
            }
        }
    }
}

/// Reports the second and later uses of each value of `key`.
fn unique<'a>(
    drafts: &'a [ConnectionDraft],
    key: &str,
    get: impl Fn(&'a ConnectionDraft) -> Option<&'a str>,
    p: &mut Problems,
) {
    let mut first: HashMap<&str, &str> = HashMap::new();
    for d in drafts {
        if let Some(value) = get(d) {
            if let Some(earlier) = first.get(value) {
                p.push(Problem::new(
                    format!("{}.{key}", d.path),
                    format!("duplicate {key} {value:?} (also {earlier})"),
                ));
            } else {
                first.insert(value, &d.path);
            }
        }
    }
}

/// Reports each cycle of `after` once, as `a -> b -> a`, at the `after` of the cycle's
/// first connection in file order.
fn cycles(drafts: &[ConnectionDraft], index: &HashMap<&str, usize>, p: &mut Problems) {
    // Edges from a connection to the connections it runs after (unknown names are
    // reported elsewhere).
    let edges: Vec<Vec<usize>> = drafts
        .iter()
        .map(|d| {
            d.after
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect()
        })
        .collect();

    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; drafts.len()];
    let mut found: Vec<Vec<usize>> = Vec::new();

    // An explicit stack instead of recursion: a long chain of `after`s can't overflow it.
    for start in 0..drafts.len() {
        if mark[start] != Mark::New {
            continue;
        }
        let mut path: Vec<usize> = vec![start];
        let mut next_edge: Vec<usize> = vec![0];
        mark[start] = Mark::OnPath;
        while let (Some(&node), Some(edge)) = (path.last(), next_edge.last_mut()) {
            if let Some(&to) = edges[node].get(*edge) {
                *edge += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::OnPath;
                        path.push(to);
                        next_edge.push(0);
                    }
                    Mark::OnPath => {
                        if let Some(at) = path.iter().position(|&n| n == to) {
                            let mut cycle = path[at..].to_vec();
                            // Start at the first connection in file order, so the same
                            // cycle met from elsewhere is recognised.
                            if let Some(min_at) = cycle
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, n)| **n)
                                .map(|(i, _)| i)
                            {
                                cycle.rotate_left(min_at);
                            }
                            if !found.contains(&cycle) {
                                found.push(cycle);
                            }
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
                next_edge.pop();
            }
        }
    }

    for cycle in found {
        let names: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .filter_map(|&i| drafts[i].name.as_deref())
            .collect();
        p.push(Problem::new(
            format!("{}.after", drafts[cycle[0]].path),
            format!("`after` forms a cycle: {}", names.join(" -> ")),
        ));
    }
}

/// Things that are valid but probably not meant.
pub(super) fn warnings(config: &Config) -> Vec<Problem> {
    let mut w = Vec::new();

    if !config.server.listen.ip().is_loopback() && config.server.token.is_none() {
        w.push(Problem::new(
            "server.token",
            format!(
                "server.listen {} is not a loopback address and no token is set: anyone who \
                 can reach it can use the control API",
                config.server.listen
            ),
        ));
    }

    for instance in config.instances.values() {
        if instance.base_url.starts_with("http://")
            && !matches!(instance.auth, Auth::None)
            && !is_local_url(&instance.base_url)
        {
            w.push(Problem::new(
                format!("{}.base_url", instance.section),
                "credentials will be sent over plain http to a host that is not local; use https",
            ));
        }
    }

    let now = Utc::now();
    for (i, c) in config.connections.iter().enumerate() {
        if let Some(rule) = &c.cron
            && rule.next_after(now).is_none()
        {
            w.push(Problem::new(
                format!("connections[{i}].cron"),
                format!("`{}` never fires again", rule.expr()),
            ));
        }
        for target in &c.after {
            if config
                .connections
                .iter()
                .any(|other| &other.name == target && !other.enabled)
            {
                w.push(Problem::new(
                    format!("connections[{i}].after"),
                    format!("{target:?} is disabled, so it will not trigger this connection"),
                ));
            }
        }
    }

    for (i, g) in config.groups.iter().enumerate() {
        if !config
            .connections
            .iter()
            .any(|c| c.group.as_deref() == Some(g.name.as_str()))
        {
            w.push(Problem::new(
                format!("groups[{i}]"),
                format!("no connection is in group {:?}", g.name),
            ));
        }
    }
    w
}

/// Whether a URL's host is this machine (where plain http is no risk).
fn is_local_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| match u.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}
