//! Routing rules on small hand-made populations.
#![allow(clippy::unwrap_used)]
use super::*;

fn candidate(id: &str) -> Candidate {
    Candidate {
        external_id: Some(id.into()),
        login: Some(id.into()),
        email: format!("{id}@example.com"),
        display_name: id.to_uppercase(),
    }
}

fn person(id: &str, manager: Option<(&str, bool)>) -> (String, PersonFacts) {
    (
        id.to_string(),
        PersonFacts {
            external_id: id.into(),
            email: Some(format!("{id}@example.com")),
            manager: manager.map(|(m, active)| ManagerFacts {
                candidate: candidate(m),
                active,
            }),
            manager_named: manager.is_some(),
        },
    )
}

/// A plan with the manager-then-fallback chain over each person's accesses.
fn by_manager(
    people: HashMap<String, PersonFacts>,
    fallbacks: Vec<Candidate>,
) -> Result<RoutingPlan> {
    let subjects: Vec<Subject> = people
        .keys()
        .map(|p| (p.clone(), GroupOwner::NotNamed))
        .collect();
    let chain = ChainPeople {
        steps: vec![ChainStep::Manager],
        fallbacks,
        ..ChainPeople::default()
    };
    RoutingPlan::new(people, subjects, chain)
}

fn reviewer(plan: &RoutingPlan, id: &str) -> (String, &'static str) {
    reviewer_of(plan, id, &GroupOwner::NotNamed)
}

fn reviewer_of(plan: &RoutingPlan, id: &str, owner: &GroupOwner) -> (String, &'static str) {
    let (who, routing) = plan.reviewer_for(id, owner, &HashSet::new()).unwrap();
    (who.external_id.clone().unwrap(), routing.as_str())
}

fn owner(id: &str, active: bool) -> (String, ManagerFacts) {
    (
        id.to_string(),
        ManagerFacts {
            candidate: candidate(id),
            active,
        },
    )
}

#[test]
fn the_owner_reviews_their_group_then_the_manager_takes_over() {
    let people = HashMap::from([
        person("ann", Some(("boss", true))),
        person("olga", Some(("boss", true))),
    ]);
    let olga = GroupOwner::Person("olga".into());
    let gone = GroupOwner::Person("gone".into());
    let subjects = vec![
        ("ann".to_string(), olga.clone()),
        ("olga".to_string(), olga.clone()),
        ("ann".to_string(), GroupOwner::NotNamed),
        ("ann".to_string(), gone.clone()),
        ("ann".to_string(), GroupOwner::Missing),
    ];
    let chain = ChainPeople {
        steps: vec![ChainStep::Owner, ChainStep::Manager],
        owners: HashMap::from([owner("olga", true), owner("gone", false)]),
        named: vec![],
        fallbacks: vec![candidate("ciso")],
    };
    let plan = RoutingPlan::new(people, subjects, chain).unwrap();
    assert_eq!(reviewer_of(&plan, "ann", &olga), ("olga".into(), "owner"));
    // The owner's own access goes on to her manager.
    assert_eq!(
        reviewer_of(&plan, "olga", &olga),
        ("boss".into(), "self_review_rerouted")
    );
    // No owner named: the manager, as if the step were not there.
    assert_eq!(
        reviewer_of(&plan, "ann", &GroupOwner::NotNamed),
        ("boss".into(), "manager")
    );
    for unusable in [&gone, &GroupOwner::Missing] {
        assert_eq!(
            reviewer_of(&plan, "ann", unusable),
            ("boss".into(), "owner_unavailable")
        );
    }
}

#[test]
fn named_reviewers_review_everything_but_their_own_access() {
    let people = HashMap::from([person("ann", None), person("rita", None)]);
    let subjects: Vec<Subject> = ["ann", "rita"]
        .iter()
        .map(|p| (p.to_string(), GroupOwner::NotNamed))
        .collect();
    let chain = ChainPeople {
        steps: vec![ChainStep::Named],
        owners: HashMap::new(),
        named: vec![candidate("rita")],
        fallbacks: vec![candidate("ciso")],
    };
    let plan = RoutingPlan::new(people, subjects, chain).unwrap();
    assert_eq!(reviewer(&plan, "ann"), ("rita".into(), "named"));
    assert_eq!(
        reviewer(&plan, "rita"),
        ("ciso".into(), "self_review_rerouted")
    );
}

#[test]
fn an_owner_and_a_member_who_manages_them_are_not_each_others_reviewers() {
    // olga owns a group ann is in; ann is olga's manager.
    let people = HashMap::from([person("ann", None), person("olga", Some(("ann", true)))]);
    let olga = GroupOwner::Person("olga".into());
    let subjects = vec![
        ("ann".to_string(), olga.clone()),
        ("olga".to_string(), GroupOwner::NotNamed),
    ];
    let chain = ChainPeople {
        steps: vec![ChainStep::Owner, ChainStep::Manager],
        owners: HashMap::from([owner("olga", true)]),
        named: vec![],
        fallbacks: vec![candidate("ciso")],
    };
    let plan = RoutingPlan::new(people, subjects, chain).unwrap();
    assert_eq!(
        reviewer_of(&plan, "ann", &olga),
        ("ciso".into(), "mutual_pair_rerouted")
    );
    assert_eq!(reviewer(&plan, "olga"), ("ann".into(), "manager"));
}

#[test]
fn each_others_managers_are_not_each_others_reviewers() {
    let people = HashMap::from([
        person("ann", Some(("bob", true))),
        person("bob", Some(("ann", true))),
    ]);
    let plan = by_manager(people, vec![candidate("ciso")]).unwrap();
    assert_eq!(
        reviewer(&plan, "ann"),
        ("ciso".into(), "mutual_pair_rerouted")
    );
    assert_eq!(reviewer(&plan, "bob"), ("ann".into(), "manager"));
}

#[test]
fn unavailable_managers_and_self_review_are_skipped_with_their_reason() {
    let people = HashMap::from([
        person("ann", Some(("gone", false))),
        person("ciso", None),
        person("dan", None),
    ]);
    let plan = by_manager(people, vec![candidate("ciso"), candidate("audit")]).unwrap();
    assert_eq!(
        reviewer(&plan, "ann"),
        ("ciso".into(), "manager_unavailable")
    );
    assert_eq!(
        reviewer(&plan, "ciso"),
        ("audit".into(), "self_review_rerouted")
    );
    assert_eq!(reviewer(&plan, "dan"), ("ciso".into(), "fallback"));
}

#[test]
fn a_fallback_and_the_person_they_review_do_not_review_each_other() {
    // ciso has no manager (reviewed by audit); audit's manager is ciso: a pair.
    let people = HashMap::from([person("audit", Some(("ciso", true))), person("ciso", None)]);
    let plan = by_manager(people, vec![candidate("audit"), candidate("ext")]).unwrap();
    assert_eq!(reviewer(&plan, "audit"), ("ciso".into(), "manager"));
    assert_eq!(
        reviewer(&plan, "ciso"),
        ("ext".into(), "mutual_pair_rerouted")
    );
}

#[test]
fn a_holder_of_a_privileged_group_does_not_review_it() {
    let people = HashMap::from([person("ann", Some(("boss", true)))]);
    let plan = by_manager(people, vec![candidate("ciso")]).unwrap();
    let holders: HashSet<String> = ["boss".to_string()].into();
    let (who, routing) = plan
        .reviewer_for("ann", &GroupOwner::NotNamed, &holders)
        .unwrap();
    assert_eq!(
        (who.email.as_str(), routing.as_str()),
        ("ciso@example.com", "privileged_holder_rerouted")
    );
}

#[test]
fn no_independent_reviewer_left_is_an_error() {
    let people = HashMap::from([person("it", None)]);
    assert!(by_manager(people, vec![candidate("it")]).is_err());
}
