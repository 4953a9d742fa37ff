//! Diesel table definitions shared by both backends; they mirror `migrations/*/up.sql`.

diesel::table! {
    sources (name) {
        name -> Text,
        kind -> Text,
        current_sync_run_id -> Nullable<Text>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Text,
        source -> Text,
        server -> Text,
        searches -> Text,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        pages -> BigInt,
        entries -> BigInt,
        identities -> BigInt,
        entitlements -> BigInt,
        grants -> BigInt,
        unresolved_members -> BigInt,
        raw_sha256 -> Nullable<Text>,
        status -> Text,
        error -> Nullable<Text>,
        seq -> BigInt,
        bind_identity -> Nullable<Text>,
        page_size -> Nullable<BigInt>,
        memberships -> BigInt,
        cycles -> BigInt,
        heartbeat_at -> Nullable<Timestamp>,
        diff -> Text,
        problems_from -> Nullable<Text>,
        derivation -> Text,
    }
}

diesel::table! {
    identity_versions (id) {
        id -> BigInt,
        source -> Text,
        external_id -> Text,
        valid_from -> BigInt,
        valid_to -> Nullable<BigInt>,
        content_sha256 -> Text,
        dn -> Text,
        dn_norm -> Text,
        login -> Text,
        display_name -> Text,
        email -> Nullable<Text>,
        manager_dn_norm -> Nullable<Text>,
        status -> Text,
        account_kind -> Text,
        member_of -> Text,
        gid_number -> Nullable<Text>,
        last_login_at -> Nullable<Timestamp>,
        title -> Nullable<Text>,
        department -> Nullable<Text>,
    }
}

diesel::table! {
    entitlement_versions (id) {
        id -> BigInt,
        source -> Text,
        external_id -> Text,
        valid_from -> BigInt,
        valid_to -> Nullable<BigInt>,
        content_sha256 -> Text,
        dn -> Text,
        dn_norm -> Text,
        name -> Text,
        kind -> Text,
        description -> Nullable<Text>,
        privileged -> Bool,
        owner_dn_norm -> Nullable<Text>,
        gid_number -> Nullable<Text>,
        direct_members -> BigInt,
    }
}

diesel::table! {
    membership_versions (id) {
        id -> BigInt,
        source -> Text,
        group_external_id -> Text,
        member_kind -> Text,
        member_ref -> Text,
        valid_from -> BigInt,
        valid_to -> Nullable<BigInt>,
    }
}

diesel::table! {
    grant_versions (id) {
        id -> BigInt,
        source -> Text,
        identity_external_id -> Text,
        entitlement_external_id -> Text,
        via -> Nullable<Text>,
        valid_from -> BigInt,
        valid_to -> Nullable<BigInt>,
        first_seen_at -> Timestamp,
    }
}

diesel::table! {
    sync_run_problems (id) {
        id -> BigInt,
        sync_run_id -> Text,
        kind -> Text,
        subject -> Text,
        detail -> Text,
    }
}

diesel::table! {
    campaigns (id) {
        id -> Text,
        definition -> Text,
        title -> Text,
        source -> Text,
        sync_run_id -> Text,
        scope -> Text,
        period_start -> Timestamp,
        opened_at -> Timestamp,
        due_at -> Timestamp,
        closed_at -> Nullable<Timestamp>,
        state -> Text,
        late -> Bool,
        close_held_at -> Nullable<Timestamp>,
        stage -> BigInt,
    }
}

diesel::table! {
    campaign_schedules (definition) {
        definition -> Text,
        first_seen_at -> Timestamp,
    }
}

diesel::table! {
    reviewers (id) {
        id -> Text,
        campaign_id -> Text,
        identity_external_id -> Nullable<Text>,
        login -> Nullable<Text>,
        email -> Text,
        display_name -> Text,
    }
}

diesel::table! {
    review_items (id) {
        id -> Text,
        campaign_id -> Text,
        reviewer_id -> Text,
        routing -> Text,
        identity_external_id -> Text,
        identity_login -> Text,
        identity_name -> Text,
        identity_email -> Nullable<Text>,
        identity_status -> Text,
        entitlement_external_id -> Text,
        entitlement_name -> Text,
        entitlement_dn -> Text,
        privileged -> Bool,
        via -> Nullable<Text>,
        granted_since -> Timestamp,
        stage -> BigInt,
        state -> Text,
        decided_at -> Nullable<Timestamp>,
        no_response_outcome -> Nullable<Text>,
        approved_until -> Nullable<Timestamp>,
        expired_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    decisions (id) {
        id -> Text,
        item_id -> Text,
        campaign_id -> Text,
        reviewer_id -> Text,
        outcome -> Text,
        comment -> Nullable<Text>,
        decided_at -> Timestamp,
        auth_method -> Text,
        auth_context -> Text,
        approved_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        dedupe_key -> Text,
        kind -> Text,
        campaign_id -> Nullable<Text>,
        reviewer_id -> Nullable<Text>,
        recipient -> Text,
        state -> Text,
        attempts -> BigInt,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        message_id -> Nullable<Text>,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    link_tokens (jti_hash) {
        jti_hash -> Text,
        purpose -> Text,
        reviewer_id -> Text,
        campaign_id -> Text,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    events (seq) {
        seq -> BigInt,
        kind -> Text,
        actor -> Text,
        occurred_at -> Timestamp,
        subject -> Nullable<Text>,
        payload -> Text,
        leaf_hash -> Text,
    }
}

diesel::table! {
    checkpoints (size) {
        size -> BigInt,
        root_hash -> Text,
        key_id -> Text,
        signature -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    remediation_tasks (id) {
        id -> Text,
        campaign_id -> Text,
        item_id -> Text,
        kind -> Text,
        state -> Text,
        attempts -> BigInt,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        verified_at -> Nullable<Timestamp>,
        source -> Text,
        mode -> Text,
        reason -> Text,
        action -> Nullable<Text>,
        planned_at -> Nullable<Timestamp>,
        executed_at -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        locked_until -> Nullable<Timestamp>,
        checked_sync_run_id -> Nullable<Text>,
        verified_sync_run_id -> Nullable<Text>,
        ticket -> Nullable<Text>,
        generation -> BigInt,
    }
}

diesel::table! {
    jobs (id) {
        id -> Text,
        kind -> Text,
        dedupe_key -> Nullable<Text>,
        payload -> Text,
        state -> Text,
        attempts -> BigInt,
        run_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    staff_users (id) {
        id -> Text,
        issuer -> Text,
        subject -> Text,
        email -> Text,
        display_name -> Text,
        role -> Text,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        staff_user_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        role -> Text,
        last_seen_at -> Nullable<Timestamp>,
        auth_context -> Text,
    }
}

diesel::table! {
    staff_sign_ins (attempt_hash) {
        attempt_hash -> Text,
        state -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        reviewer_id -> Nullable<Text>,
    }
}

diesel::table! {
    staff_sign_in_links (secret_hash) {
        secret_hash -> Text,
        staff_user_id -> Text,
        role -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        token_hash -> Text,
        staff_user_id -> Text,
        name -> Text,
        role -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(sync_runs -> sources (source));
diesel::joinable!(sync_run_problems -> sync_runs (sync_run_id));
diesel::joinable!(review_items -> campaigns (campaign_id));
diesel::joinable!(review_items -> reviewers (reviewer_id));
diesel::joinable!(reviewers -> campaigns (campaign_id));
diesel::joinable!(decisions -> review_items (item_id));
diesel::joinable!(remediation_tasks -> review_items (item_id));
diesel::joinable!(api_tokens -> staff_users (staff_user_id));

diesel::allow_tables_to_appear_in_same_query!(
    sources,
    sync_runs,
    identity_versions,
    entitlement_versions,
    membership_versions,
    grant_versions,
    sync_run_problems,
    campaigns,
    campaign_schedules,
    reviewers,
    review_items,
    decisions,
    outbox,
    link_tokens,
    events,
    checkpoints,
    remediation_tasks,
    jobs,
    staff_users,
    staff_sign_ins,
    staff_sign_in_links,
    sessions,
    api_tokens
);
