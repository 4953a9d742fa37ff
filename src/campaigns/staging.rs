//! The staging tables a generation writes its routing into before the database copies the
//! items itself: `INSERT ... SELECT` from the snapshot's accesses joined to the groups in
//! scope, one route per (person, group owner) and the few accesses a privileged-group rule
//! sends elsewhere. They are temporary tables of the generating connection (never seen by
//! another one): created with the groups before routing, dropped once the items are frozen
//! (a generation that fails before leaves them to the next one, which drops them first).

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use crate::campaigns::population::{Holders, Population};
use crate::campaigns::routing::GroupOwner;
use crate::db::DbConnection;
use crate::error::Result;

diesel::table! {
    /// Groups in the campaign's scope, with the key of their owner as routes name it.
    attest_gen_groups (grp) {
        grp -> Text,
        owner_key -> Text,
        name -> Text,
        dn -> Text,
        privileged -> Bool,
    }
}

diesel::table! {
    /// Where a person's accesses to groups with one owner go, and the person as frozen.
    attest_gen_routes (person, owner_key) {
        person -> Text,
        owner_key -> Text,
        reviewer_id -> Text,
        routing -> Text,
        login -> Text,
        name -> Text,
        email -> Nullable<Text>,
        status -> Text,
    }
}

diesel::table! {
    /// Accesses to a privileged group whose route's reviewer holds that group.
    attest_gen_exceptions (person, grp) {
        person -> Text,
        grp -> Text,
        reviewer_id -> Text,
        routing -> Text,
    }
}

const TABLES: [&str; 3] = [
    "attest_gen_groups",
    "attest_gen_routes",
    "attest_gen_exceptions",
];

/// The page cache of a SQLite connection's temporary schema while it generates, in KiB: a
/// million-item campaign's staging tables take about 40 MB.
const TEMP_CACHE_KIB: i64 = 64 * 1024;

/// Rows per INSERT into a staging table on SQLite (PostgreSQL takes them in one COPY).
const ROWS_PER_INSERT: usize = 1_000;

/// Writes staging rows: a binary `COPY` on PostgreSQL (a tenth of the time of multi-row
/// inserts), multi-row inserts on SQLite.
macro_rules! stage_rows {
    ($conn:expr, $table:expr, $rows:expr, $row:expr) => {{
        match $conn {
            DbConnection::Postgres(pg) => {
                let values: Vec<_> = $rows.iter().map($row).collect();
                diesel::copy_from($table)
                    .from_insertable(&values)
                    .execute(pg)?;
            }
            DbConnection::Sqlite(sqlite) => {
                for chunk in $rows.chunks(ROWS_PER_INSERT) {
                    let values: Vec<_> = chunk.iter().map($row).collect();
                    diesel::insert_into($table)
                        .values(&values)
                        .execute(sqlite)?;
                }
            }
        }
        Ok(())
    }};
}

/// Creates the staging tables empty on this connection (left over ones are dropped first).
pub(crate) fn create(conn: &mut DbConnection) -> Result<()> {
    drop_all(conn)?;
    // On SQLite: tables clustered on their key (a join's lookup is one search, not an index's
    // and then the table's), with a temporary schema's page cache that holds them (its default
    // is 2 MB, so a large campaign's routes spilled to a file and were read back per range).
    let (boolean, clustered) = match conn {
        DbConnection::Postgres(_) => ("BOOLEAN", ""),
        DbConnection::Sqlite(_) => {
            execute(conn, &format!("PRAGMA temp.cache_size = -{TEMP_CACHE_KIB}"))?;
            ("INTEGER", " WITHOUT ROWID")
        }
    };
    let ddl = [
        format!(
            "CREATE TEMPORARY TABLE attest_gen_groups (grp TEXT PRIMARY KEY, owner_key TEXT \
             NOT NULL, name TEXT NOT NULL, dn TEXT NOT NULL, privileged {boolean} NOT \
             NULL){clustered}"
        ),
        format!(
            "CREATE TEMPORARY TABLE attest_gen_routes (person TEXT NOT NULL, owner_key TEXT \
             NOT NULL, reviewer_id TEXT NOT NULL, routing TEXT NOT NULL, login TEXT NOT NULL, \
             name TEXT NOT NULL, email TEXT, status TEXT NOT NULL, PRIMARY KEY (person, \
             owner_key)){clustered}"
        ),
        format!(
            "CREATE TEMPORARY TABLE attest_gen_exceptions (person TEXT NOT NULL, grp TEXT NOT \
             NULL, reviewer_id TEXT NOT NULL, routing TEXT NOT NULL, PRIMARY KEY (person, \
             grp)){clustered}"
        ),
    ];
    for statement in ddl {
        execute(conn, &statement)?;
    }
    Ok(())
}

/// Drops the staging tables of this connection, if any, and on SQLite gives back the memory
/// their pages took (the temporary schema's cache back to SQLite's default size).
pub(crate) fn drop_all(conn: &mut DbConnection) -> Result<()> {
    for table in TABLES {
        execute(conn, &format!("DROP TABLE IF EXISTS {table}"))?;
    }
    if matches!(conn, DbConnection::Sqlite(_)) {
        execute(conn, "PRAGMA temp.cache_size = -2000")?;
    }
    Ok(())
}

fn execute(conn: &mut DbConnection, statement: &str) -> Result<()> {
    match conn {
        DbConnection::Postgres(pg) => diesel::sql_query(statement).execute(pg)?,
        DbConnection::Sqlite(sqlite) => diesel::sql_query(statement).execute(sqlite)?,
    };
    Ok(())
}

/// A group row: (id, owner key, name, DN, privileged).
pub(crate) type GroupRow = (String, String, String, String, bool);
/// A route row: (person, owner key, reviewer id, routing, login, name, email, status).
pub(crate) type RouteRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
);
/// An exception row: (person, group, reviewer id, routing).
pub(crate) type ExceptionRow = (String, String, String, String);

pub(crate) fn insert_groups(conn: &mut DbConnection, rows: &[GroupRow]) -> Result<()> {
    use attest_gen_groups as g;
    stage_rows!(conn, g::table, rows, |r: &GroupRow| {
        (
            g::grp.eq(&r.0),
            g::owner_key.eq(&r.1),
            g::name.eq(&r.2),
            g::dn.eq(&r.3),
            g::privileged.eq(r.4),
        )
    })
}

pub(crate) fn insert_routes(conn: &mut DbConnection, rows: &[RouteRow]) -> Result<()> {
    use attest_gen_routes as r;
    stage_rows!(conn, r::table, rows, |row: &RouteRow| {
        (
            r::person.eq(&row.0),
            r::owner_key.eq(&row.1),
            r::reviewer_id.eq(&row.2),
            r::routing.eq(&row.3),
            r::login.eq(&row.4),
            r::name.eq(&row.5),
            r::email.eq(&row.6),
            r::status.eq(&row.7),
        )
    })
}

pub(crate) fn insert_exceptions(conn: &mut DbConnection, rows: &[ExceptionRow]) -> Result<()> {
    use attest_gen_exceptions as x;
    stage_rows!(conn, x::table, rows, |row: &ExceptionRow| {
        (
            x::person.eq(&row.0),
            x::grp.eq(&row.1),
            x::reviewer_id.eq(&row.2),
            x::routing.eq(&row.3),
        )
    })
}

/// Gives PostgreSQL's planner the staging tables' sizes (temporary tables are never
/// analyzed by autovacuum), so that it joins them to a range of accesses the cheap way.
pub(crate) fn analyze(conn: &mut DbConnection) -> Result<()> {
    if matches!(conn, DbConnection::Postgres(_)) {
        for table in TABLES {
            execute(conn, &format!("ANALYZE {table}"))?;
        }
    }
    Ok(())
}

/// How routes name a group's owner in the staging tables.
pub(crate) fn owner_key(owner: &GroupOwner) -> String {
    match owner {
        GroupOwner::NotNamed => String::new(),
        GroupOwner::Missing => "?".to_string(),
        GroupOwner::Person(id) => format!("p:{id}"),
    }
}

fn owner_of_key(key: &str) -> GroupOwner {
    match key {
        "" => GroupOwner::NotNamed,
        "?" => GroupOwner::Missing,
        key => GroupOwner::Person(key.strip_prefix("p:").unwrap_or(key).to_string()),
    }
}

#[derive(diesel::QueryableByName)]
struct PersonAndKey {
    #[diesel(sql_type = Text)]
    person: String,
    #[diesel(sql_type = Text)]
    key: String,
}

/// Who has an access to a staged group in the snapshot `seq` of `source` (each with the
/// group's owner), and who holds each privileged one, worked out by the database: two
/// passes over the accesses that send back one row per (person, owner) and one per
/// privileged access, not one per access. People out of scope are left out; an off-cycle
/// review's subjects are only those with an access first seen after `new_since`, while
/// every holder still counts for the independence rule.
pub(crate) fn holders(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    population: &Population,
) -> Result<Holders> {
    let postgres = matches!(conn, DbConnection::Postgres(_));
    let p = |n: usize| {
        if postgres {
            format!("${n}")
        } else {
            "?".to_string()
        }
    };
    let snapshot = format!(
        "FROM grant_versions g JOIN attest_gen_groups e ON e.grp = g.entitlement_external_id \
         WHERE g.source = {} AND g.valid_from <= {} AND (g.valid_to IS NULL OR g.valid_to > {})",
        p(1),
        p(2),
        p(3)
    );
    let new_access = match population.new_since {
        Some(_) => format!(" AND g.first_seen_at > {}", p(4)),
        None => String::new(),
    };
    let subjects_sql = format!(
        "SELECT DISTINCT g.identity_external_id AS person, e.owner_key AS key {snapshot}{new_access}"
    );
    // From the few privileged groups to their accesses (by the (source, group) index), not
    // through every access: SQLite has no statistics on the staging tables, and `CROSS JOIN`
    // keeps its join order (PostgreSQL plans it from `ANALYZE` either way). 0.5 s -> 2 ms
    // at 1,000,000 accesses.
    let privileged_sql = format!(
        "SELECT g.identity_external_id AS person, g.entitlement_external_id AS key \
         FROM attest_gen_groups e CROSS JOIN grant_versions g \
         WHERE e.privileged AND g.entitlement_external_id = e.grp AND g.source = {} \
         AND g.valid_from <= {} AND (g.valid_to IS NULL OR g.valid_to > {})",
        p(1),
        p(2),
        p(3)
    );
    let in_scope = |person: &str| population.people.get(person).is_some_and(|p| p.in_scope);
    let mut holders = Holders {
        subjects: std::collections::HashSet::new(),
        of_privileged: std::collections::HashMap::new(),
    };
    let bound = |sql: String| {
        diesel::sql_query(sql)
            .bind::<Text, _>(source.to_string())
            .bind::<BigInt, _>(seq)
            .bind::<BigInt, _>(seq)
    };
    let subjects: Vec<PersonAndKey> = match (population.new_since, &mut *conn) {
        (Some(since), DbConnection::Postgres(pg)) => {
            bound(subjects_sql).bind::<Timestamp, _>(since).load(pg)?
        }
        (Some(since), DbConnection::Sqlite(sqlite)) => bound(subjects_sql)
            .bind::<Timestamp, _>(since)
            .load(sqlite)?,
        (None, DbConnection::Postgres(pg)) => bound(subjects_sql).load(pg)?,
        (None, DbConnection::Sqlite(sqlite)) => bound(subjects_sql).load(sqlite)?,
    };
    for row in subjects {
        if in_scope(&row.person) {
            holders
                .subjects
                .insert((row.person, owner_of_key(&row.key)));
        }
    }
    let privileged: Vec<PersonAndKey> = match conn {
        DbConnection::Postgres(pg) => bound(privileged_sql).load(pg)?,
        DbConnection::Sqlite(sqlite) => bound(privileged_sql).load(sqlite)?,
    };
    for row in privileged {
        if in_scope(&row.person) {
            holders
                .of_privileged
                .entry(row.key)
                .or_default()
                .insert(row.person);
        }
    }
    Ok(holders)
}

/// Which accesses one copy takes: the snapshot `seq` of `source`, access ids in
/// (`after`, `up_to`], and for an off-cycle review only those first seen after `new_since`.
pub(crate) struct CopyRange<'a> {
    pub(crate) campaign_id: &'a str,
    /// The first 19 characters of a fresh UUID v7 (`xxxxxxxx-xxxx-7xxx-`): item ids are this
    /// prefix and the access id, so that they are unique, valid and in access order.
    pub(crate) id_prefix: &'a str,
    pub(crate) source: &'a str,
    pub(crate) seq: i64,
    pub(crate) after: i64,
    pub(crate) up_to: i64,
    pub(crate) new_since: Option<NaiveDateTime>,
}

/// Copies one range of accesses into review items; returns how many it wrote.
pub(crate) fn copy_items(conn: &mut DbConnection, range: &CopyRange<'_>) -> Result<usize> {
    let postgres = matches!(conn, DbConnection::Postgres(_));
    // $n placeholders on PostgreSQL, ? on SQLite, bound in the same order.
    let mut n = 0;
    let mut p = || {
        n += 1;
        if postgres {
            format!("${n}")
        } else {
            "?".to_string()
        }
    };
    let (prefix, campaign) = (p(), p());
    let item_id = if postgres {
        format!(
            "{prefix} || lpad(to_hex(32768 + ((g.id >> 48) & 16383)), 4, '0') || '-' || \
             lpad(to_hex(g.id & 281474976710655), 12, '0')"
        )
    } else {
        format!(
            "printf('%s%04x-%012x', {prefix}, 32768 + ((g.id >> 48) & 16383), g.id & 281474976710655)"
        )
    };
    let (source, seq_from, seq_to, after, up_to) = (p(), p(), p(), p(), p());
    let new_since = match range.new_since {
        Some(_) => format!(" AND g.first_seen_at > {}", p()),
        None => String::new(),
    };
    // PostgreSQL: rows in reviewer order, so that the reviewer index takes each range in one
    // sweep of its pages rather than at random places once it outgrows the shared buffers
    // (the id indexes then take each range's ids out of order, which costs less). The sort
    // of a range (up to 100,000 rows of a few hundred bytes) may use 64 MB per generation.
    let by_reviewer = if postgres {
        " ORDER BY COALESCE(x.reviewer_id, r.reviewer_id)"
    } else {
        ""
    };
    if let DbConnection::Postgres(pg) = conn {
        pg.batch_execute("SET LOCAL work_mem = '64MB'")?;
    }
    let sql = format!(
        "INSERT INTO review_items (id, campaign_id, reviewer_id, routing, identity_external_id, \
         identity_login, identity_name, identity_email, identity_status, \
         entitlement_external_id, entitlement_name, entitlement_dn, privileged, via, \
         granted_since, state) \
         SELECT {item_id}, {campaign}, COALESCE(x.reviewer_id, r.reviewer_id), \
         COALESCE(x.routing, r.routing), g.identity_external_id, r.login, r.name, r.email, \
         r.status, g.entitlement_external_id, e.name, e.dn, e.privileged, g.via, \
         g.first_seen_at, 'pending' \
         FROM grant_versions g \
         JOIN attest_gen_groups e ON e.grp = g.entitlement_external_id \
         JOIN attest_gen_routes r ON r.person = g.identity_external_id \
         AND r.owner_key = e.owner_key \
         LEFT JOIN attest_gen_exceptions x ON x.person = g.identity_external_id \
         AND x.grp = g.entitlement_external_id \
         WHERE g.source = {source} AND g.valid_from <= {seq_from} \
         AND (g.valid_to IS NULL OR g.valid_to > {seq_to}) \
         AND g.id > {after} AND g.id <= {up_to}{new_since}{by_reviewer}"
    );
    let query = diesel::sql_query(sql)
        .bind::<Text, _>(range.id_prefix)
        .bind::<Text, _>(range.campaign_id)
        .bind::<Text, _>(range.source)
        .bind::<BigInt, _>(range.seq)
        .bind::<BigInt, _>(range.seq)
        .bind::<BigInt, _>(range.after)
        .bind::<BigInt, _>(range.up_to);
    let written = match (range.new_since, conn) {
        (Some(since), DbConnection::Postgres(pg)) => {
            query.bind::<Timestamp, _>(since).execute(pg)?
        }
        (Some(since), DbConnection::Sqlite(sqlite)) => {
            query.bind::<Timestamp, _>(since).execute(sqlite)?
        }
        (None, DbConnection::Postgres(pg)) => query.execute(pg)?,
        (None, DbConnection::Sqlite(sqlite)) => query.execute(sqlite)?,
    };
    Ok(written)
}
