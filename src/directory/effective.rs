//! Effective access: who reaches which group, directly or through nested groups, worked out
//! from one sync's direct memberships. Pure computation over an in-memory [`DirectoryGraph`]
//! (keys only: ids, normalised DNs, logins, group names, member references); it reads and
//! writes nothing. Member references that match no synced person or group, nesting cycles and
//! chains deeper than the limit are reported as [`Problem`]s, never silently dropped, and
//! never loop.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::sources::{GroupRecord, PersonRecord, normalize_dn};

/// How deep group-in-group chains are followed; deeper links are reported, not followed.
pub const MAX_NESTING_DEPTH: usize = 64;

/// How accesses are derived from memberships, recorded with each run: a run reuses the
/// previous run's accesses only if they were derived the same way.
pub const DERIVATION: &str = "nested-v1 depth=64 member_of primary_gid";

/// Problem kinds that follow from the directory's content (an unchanged directory has the
/// same ones); everything else is recorded afresh on every run.
pub const CONTENT_PROBLEM_KINDS: [&str; 5] = [
    "unresolved_member",
    "group_outside_scope",
    "cycle",
    "too_deep",
    "duplicate_login",
];

/// Separates the groups of a `via` chain: "eng <- sre" (access to the reviewed group comes
/// through `eng`, which has `sre` as a member, which has the person).
pub const VIA_SEPARATOR: &str = " <- ";

/// A direct member as the directory names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRef {
    /// A normalised DN: a person, a group, or something outside what was synced.
    Dn(String),
    /// A login (posixGroup `memberUid`).
    Login(String),
}

impl MemberRef {
    pub fn kind(&self) -> &'static str {
        match self {
            MemberRef::Dn(_) => "dn",
            MemberRef::Login(_) => "login",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            MemberRef::Dn(v) | MemberRef::Login(v) => v,
        }
    }

    pub fn from_parts(kind: &str, value: String) -> MemberRef {
        match kind {
            "login" => MemberRef::Login(value),
            _ => MemberRef::Dn(value),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonKey {
    pub external_id: String,
    pub dn_norm: String,
    pub login: String,
    /// Groups the person's own entry names (`memberOf`), normalised DNs.
    pub member_of: Vec<String>,
    /// Primary posix group (`gidNumber`).
    pub gid_number: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupKey {
    pub external_id: String,
    pub dn_norm: String,
    pub name: String,
    pub members: Vec<MemberRef>,
    pub gid_number: Option<String>,
}

impl PersonKey {
    /// The keys of a person as the source describes them, normalised.
    pub fn of(person: &PersonRecord) -> PersonKey {
        let mut member_of: Vec<String> =
            person.member_of.iter().map(|dn| normalize_dn(dn)).collect();
        member_of.sort_unstable();
        member_of.dedup();
        PersonKey {
            external_id: person.external_id.clone(),
            dn_norm: normalize_dn(&person.dn),
            login: person.login.clone(),
            member_of,
            gid_number: person.gid_number.clone(),
        }
    }
}

impl GroupKey {
    /// The keys of a group as the source describes it: members normalised, each once.
    pub fn of(group: &GroupRecord) -> GroupKey {
        let mut members: Vec<MemberRef> = group
            .member_dns
            .iter()
            .map(|dn| MemberRef::Dn(normalize_dn(dn)))
            .chain(
                group
                    .member_logins
                    .iter()
                    .map(|l| MemberRef::Login(l.clone())),
            )
            .collect();
        members.sort_unstable();
        members.dedup();
        GroupKey {
            external_id: group.external_id.clone(),
            dn_norm: normalize_dn(&group.dn),
            name: group.name.clone(),
            members,
            gid_number: group.gid_number.clone(),
        }
    }
}

/// Every person and group one sync saw, with each group's direct members.
#[derive(Debug, Clone, Default)]
pub struct DirectoryGraph {
    pub people: Vec<PersonKey>,
    pub groups: Vec<GroupKey>,
}

/// Something a sync could not place, listed with the sync run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `unresolved_member`, `group_outside_scope`, `cycle` or `too_deep`.
    pub kind: &'static str,
    /// The group concerned (its name).
    pub subject: String,
    pub detail: String,
}

/// One person's access to one group: indexes into the graph's `people` and `groups`, and the
/// chain of groups it comes through (`None` for a direct member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveGrant {
    pub person: u32,
    pub group: u32,
    pub via: Option<String>,
}

#[derive(Debug, Default)]
pub struct Expansion {
    pub grants: Vec<EffectiveGrant>,
    /// Direct memberships (a person or a nested group in a group), however the directory
    /// states them (group member lists, `memberOf`, primary groups), each counted once.
    pub resolved_memberships: u64,
    pub problems: Vec<Problem>,
    pub cycles: u64,
}

#[derive(Clone, Copy)]
enum Node {
    Person(u32),
    Group(u32),
}

/// Works out every person's effective access to every group of `graph`.
pub fn expand(graph: &DirectoryGraph) -> Expansion {
    let mut by_dn: HashMap<&str, Node> = HashMap::with_capacity(graph.people.len());
    let mut by_login: HashMap<&str, u32> = HashMap::with_capacity(graph.people.len());
    let mut expansion = Expansion::default();
    for (i, person) in graph.people.iter().enumerate() {
        by_dn.insert(person.dn_norm.as_str(), Node::Person(i as u32));
        if let Some(other) = by_login.insert(person.login.as_str(), i as u32) {
            expansion.problems.push(Problem {
                kind: "duplicate_login",
                subject: person.login.clone(),
                detail: format!(
                    "two people share this login ({} and {}); memberUid members naming it \
                     are given to the second",
                    graph.people[other as usize].dn_norm, person.dn_norm
                ),
            });
        }
    }
    for (i, group) in graph.groups.iter().enumerate() {
        by_dn.insert(group.dn_norm.as_str(), Node::Group(i as u32));
    }

    let mut direct_people: Vec<Vec<u32>> = vec![Vec::new(); graph.groups.len()];
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); graph.groups.len()];
    for (g, group) in graph.groups.iter().enumerate() {
        for member in &group.members {
            let node = match member {
                MemberRef::Dn(dn) => by_dn.get(dn.as_str()).copied(),
                // Logins only ever name people.
                MemberRef::Login(login) => by_login.get(login.as_str()).map(|p| Node::Person(*p)),
            };
            match node {
                Some(Node::Person(p)) => direct_people[g].push(p),
                Some(Node::Group(child)) => children[g].push(child),
                None => expansion.problems.push(Problem {
                    kind: "unresolved_member",
                    subject: group.name.clone(),
                    detail: format!("{} {}", member.kind(), member.value()),
                }),
            }
        }
    }
    add_person_declared(graph, &by_dn, &mut direct_people, &mut expansion);
    for list in direct_people.iter_mut().chain(children.iter_mut()) {
        list.sort_unstable();
        list.dedup();
    }
    expansion.resolved_memberships = direct_people
        .iter()
        .chain(children.iter())
        .map(|l| l.len() as u64)
        .sum();
    // Visit children in name order so that the chain chosen among equally short ones is stable.
    for list in &mut children {
        list.sort_by(|a, b| {
            graph.groups[*a as usize]
                .name
                .cmp(&graph.groups[*b as usize].name)
        });
    }

    for cycle in cycles(&children) {
        expansion.cycles += 1;
        let mut names: Vec<&str> = cycle
            .iter()
            .map(|g| graph.groups[*g as usize].name.as_str())
            .collect();
        names.sort_unstable();
        expansion.problems.push(Problem {
            kind: "cycle",
            subject: names[0].to_string(),
            detail: format!("groups nested in each other: {}", names.join(", ")),
        });
    }

    for top in 0..graph.groups.len() {
        expand_group(graph, top as u32, &direct_people, &children, &mut expansion);
    }
    expansion.problems.sort();
    expansion
}

/// Memberships a person's own entry states: `memberOf` values naming synced groups, and the
/// primary group by `gidNumber`. `memberOf` values naming groups outside the group search are
/// reported once per group, with how many people name it.
fn add_person_declared(
    graph: &DirectoryGraph,
    by_dn: &HashMap<&str, Node>,
    direct_people: &mut [Vec<u32>],
    expansion: &mut Expansion,
) {
    let by_gid: HashMap<&str, u32> = graph
        .groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| g.gid_number.as_deref().map(|gid| (gid, i as u32)))
        .collect();
    let mut outside: HashMap<&str, u64> = HashMap::new();
    for (p, person) in graph.people.iter().enumerate() {
        for group_dn in &person.member_of {
            match by_dn.get(group_dn.as_str()) {
                Some(Node::Group(g)) => direct_people[*g as usize].push(p as u32),
                _ => *outside.entry(group_dn.as_str()).or_default() += 1,
            }
        }
        if let Some(g) = person.gid_number.as_deref().and_then(|gid| by_gid.get(gid)) {
            direct_people[*g as usize].push(p as u32);
        }
    }
    for (group_dn, people) in outside {
        expansion.problems.push(Problem {
            kind: "group_outside_scope",
            subject: group_dn.to_string(),
            detail: format!(
                "{people} synced people name this group in memberOf, but it is not among the \
                 synced groups (outside the group search), so that access is not reviewed"
            ),
        });
    }
}

/// Breadth-first from `top`: the shortest chain to each nested group, each person once.
fn expand_group(
    graph: &DirectoryGraph,
    top: u32,
    direct_people: &[Vec<u32>],
    children: &[Vec<u32>],
    expansion: &mut Expansion,
) {
    // Reached group -> (the group it was reached from, depth).
    let mut reached: HashMap<u32, (u32, usize)> = HashMap::new();
    reached.insert(top, (top, 0));
    let mut queue = VecDeque::from([top]);
    let mut granted: HashSet<u32> = HashSet::new();
    let mut too_deep = false;
    while let Some(group) = queue.pop_front() {
        let depth = reached[&group].1;
        let mut via = None;
        for person in &direct_people[group as usize] {
            if granted.insert(*person) {
                let chain = via.get_or_insert_with(|| chain_to(graph, top, group, &reached));
                expansion.grants.push(EffectiveGrant {
                    person: *person,
                    group: top,
                    via: chain.clone(),
                });
            }
        }
        for child in &children[group as usize] {
            if reached.contains_key(child) {
                continue;
            }
            if depth + 1 > MAX_NESTING_DEPTH {
                too_deep = true;
                continue;
            }
            reached.insert(*child, (group, depth + 1));
            queue.push_back(*child);
        }
    }
    if too_deep {
        expansion.problems.push(Problem {
            kind: "too_deep",
            subject: graph.groups[top as usize].name.clone(),
            detail: format!(
                "nested groups deeper than {MAX_NESTING_DEPTH} levels were not followed"
            ),
        });
    }
}

/// "eng <- sre": the groups between `top` (excluded) and `holder` (included).
fn chain_to(
    graph: &DirectoryGraph,
    top: u32,
    holder: u32,
    reached: &HashMap<u32, (u32, usize)>,
) -> Option<String> {
    if holder == top {
        return None;
    }
    let mut names = Vec::new();
    let mut at = holder;
    while at != top {
        names.push(graph.groups[at as usize].name.as_str());
        at = reached[&at].0;
    }
    names.reverse();
    Some(names.join(VIA_SEPARATOR))
}

/// Groups on a nesting cycle, one list per cycle (strongly connected components with more
/// than one group, or a group that contains itself). Iterative Tarjan: no recursion depth.
fn cycles(children: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let n = children.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut next_index = 0;
    let mut found = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position of the next child to look at)
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (node, ref mut next)) = work.last_mut() {
            if *next == 0 {
                index[node] = next_index;
                low[node] = next_index;
                next_index += 1;
                stack.push(node as u32);
                on_stack[node] = true;
            }
            if let Some(&child) = children[node].get(*next) {
                *next += 1;
                let child = child as usize;
                if index[child] == usize::MAX {
                    work.push((child, 0));
                } else if on_stack[child] {
                    low[node] = low[node].min(index[child]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member as usize] = false;
                    component.push(member);
                    if member as usize == node {
                        break;
                    }
                }
                let self_loop = children[node].contains(&(node as u32));
                if component.len() > 1 || self_loop {
                    component.sort_unstable();
                    found.push(component);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str) -> PersonKey {
        PersonKey {
            external_id: id.into(),
            dn_norm: format!("uid={id},ou=people"),
            login: id.into(),
            ..PersonKey::default()
        }
    }

    fn group(name: &str, members: &[&str]) -> GroupKey {
        GroupKey {
            external_id: format!("g-{name}"),
            dn_norm: format!("cn={name},ou=groups"),
            name: name.into(),
            members: members
                .iter()
                .map(|m| match m.strip_prefix("login:") {
                    Some(login) => MemberRef::Login(login.into()),
                    None => MemberRef::Dn(m.to_string()),
                })
                .collect(),
            gid_number: None,
        }
    }

    fn grants_of(graph: &DirectoryGraph, expansion: &Expansion) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = expansion
            .grants
            .iter()
            .map(|g| {
                (
                    graph.people[g.person as usize].login.clone(),
                    graph.groups[g.group as usize].name.clone(),
                    g.via.clone().unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn derivation_names_the_depth_limit() {
        assert!(DERIVATION.contains(&format!("depth={MAX_NESTING_DEPTH}")));
    }

    #[test]
    fn nested_groups_grant_access_with_the_chain() {
        let graph = DirectoryGraph {
            people: vec![person("ann"), person("bob")],
            groups: vec![
                group("all-staff", &["cn=eng,ou=groups", "uid=bob,ou=people"]),
                group("eng", &["cn=sre,ou=groups"]),
                group("sre", &["uid=ann,ou=people", "login:bob"]),
            ],
        };
        let expansion = expand(&graph);
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            grants_of(&graph, &expansion),
            vec![
                t("ann", "all-staff", "eng <- sre"),
                t("ann", "eng", "sre"),
                t("ann", "sre", ""),
                t("bob", "all-staff", ""),
                t("bob", "eng", "sre"),
                t("bob", "sre", ""),
            ]
        );
        assert!(expansion.problems.is_empty());
        assert_eq!(expansion.resolved_memberships, 5);
    }

    #[test]
    fn member_of_and_primary_groups_count_as_memberships() {
        let mut ann = person("ann");
        ann.member_of = vec![
            "cn=vpn,ou=groups".into(),
            "cn=domain admins,cn=builtin".into(),
        ];
        let mut bob = person("bob");
        bob.gid_number = Some("5000".into());
        let mut staff = group("staff", &["uid=ann,ou=people"]);
        staff.gid_number = Some("5000".into());
        let graph = DirectoryGraph {
            people: vec![ann, bob],
            groups: vec![group("vpn", &["uid=ann,ou=people"]), staff],
        };
        let expansion = expand(&graph);
        let t = |a: &str, b: &str| (a.to_string(), b.to_string(), String::new());
        assert_eq!(
            grants_of(&graph, &expansion),
            vec![t("ann", "staff"), t("ann", "vpn"), t("bob", "staff")]
        );
        assert_eq!(
            expansion.resolved_memberships, 3,
            "ann in vpn is stated twice, counted once"
        );
        assert_eq!(expansion.problems.len(), 1);
        assert_eq!(expansion.problems[0].kind, "group_outside_scope");
        assert_eq!(expansion.problems[0].subject, "cn=domain admins,cn=builtin");
    }

    #[test]
    fn cycles_are_reported_and_never_loop() {
        let graph = DirectoryGraph {
            people: vec![person("ann")],
            groups: vec![
                group("a", &["cn=b,ou=groups", "uid=ann,ou=people"]),
                group("b", &["cn=a,ou=groups"]),
                group("self", &["cn=self,ou=groups"]),
            ],
        };
        let expansion = expand(&graph);
        assert_eq!(expansion.cycles, 2);
        let kinds: Vec<_> = expansion.problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec!["cycle", "cycle"]);
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            grants_of(&graph, &expansion),
            vec![t("ann", "a", ""), t("ann", "b", "a")]
        );
    }

    #[test]
    fn unresolved_members_are_listed_with_their_group() {
        let graph = DirectoryGraph {
            people: vec![person("ann")],
            groups: vec![group(
                "vpn",
                &["uid=ann,ou=people", "cn=svc,ou=services", "login:ghost"],
            )],
        };
        let expansion = expand(&graph);
        assert_eq!(expansion.grants.len(), 1);
        let details: Vec<_> = expansion
            .problems
            .iter()
            .map(|p| (p.kind, p.subject.as_str(), p.detail.as_str()))
            .collect();
        assert_eq!(
            details,
            vec![
                ("unresolved_member", "vpn", "dn cn=svc,ou=services"),
                ("unresolved_member", "vpn", "login ghost"),
            ]
        );
    }

    #[test]
    fn chains_deeper_than_the_limit_are_cut_and_reported() {
        let depth = MAX_NESTING_DEPTH + 5;
        let mut groups: Vec<GroupKey> = (0..depth)
            .map(|i| {
                group(
                    &format!("g{i:03}"),
                    &[&format!("cn=g{:03},ou=groups", i + 1)],
                )
            })
            .collect();
        groups.push(group(&format!("g{depth:03}"), &["uid=ann,ou=people"]));
        let graph = DirectoryGraph {
            people: vec![person("ann")],
            groups,
        };
        let expansion = expand(&graph);
        assert!(
            expansion
                .problems
                .iter()
                .any(|p| p.kind == "too_deep" && p.subject == "g000")
        );
        // The top group does not reach ann; the groups within the limit of her do.
        assert!(!expansion.grants.iter().any(|g| g.group == 0));
        assert!(expansion.grants.iter().any(|g| g.group as usize == depth));
    }
}
