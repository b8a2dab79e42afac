-- Residency Scheduler schema (the tables TARGETS.md names, plus auth and audit).
-- Applied by `python -m scheduler.db.seed --schema` as the `scheduler` role, owner of residency_scheduler.

CREATE TABLE people (
    id              serial PRIMARY KEY,
    name            text NOT NULL,
    type            text NOT NULL CHECK (type IN ('resident', 'faculty')),
    email           text NOT NULL UNIQUE,
    pgy_level       integer CHECK (pgy_level BETWEEN 1 AND 3),
    faculty_role    text CHECK (faculty_role IN ('program_director', 'associate_program_director', 'core_faculty')),
    specialties     text[] NOT NULL DEFAULT '{}',
    target_clinical_blocks integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- residents have a PGY level and no faculty role; faculty the other way round
    CHECK ((type = 'resident') = (pgy_level IS NOT NULL)),
    CHECK ((type = 'faculty') = (faculty_role IS NOT NULL))
);

CREATE TABLE rotation_templates (
    id                   serial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    activity_type        text NOT NULL,
    abbreviation         text NOT NULL,
    supervision_required boolean NOT NULL DEFAULT true,
    max_residents        integer,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blocks (
    id            serial PRIMARY KEY,
    date          date NOT NULL,
    time_of_day   text NOT NULL CHECK (time_of_day IN ('AM', 'PM')),
    block_number  integer NOT NULL,
    is_weekend    boolean NOT NULL DEFAULT false,
    is_holiday    boolean NOT NULL DEFAULT false,
    holiday_name  text,
    day_type      text NOT NULL,
    actual_date   date,
    UNIQUE (date, time_of_day)
);

CREATE TABLE assignments (
    id                       serial PRIMARY KEY,
    block_id                 integer NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    person_id                integer NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    rotation_template_id     integer REFERENCES rotation_templates (id),
    role                     text NOT NULL CHECK (role IN ('primary', 'supervising', 'backup')),
    activity_override        text,
    notes                    text,
    override_reason          text,
    override_acknowledged_at timestamptz,
    created_by               text NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (block_id, person_id)
);
CREATE INDEX assignments_person_id_idx ON assignments (person_id);

CREATE TABLE users (
    id                    serial PRIMARY KEY,
    username              text NOT NULL UNIQUE,
    email                 text NOT NULL UNIQUE,
    person_id             integer REFERENCES people (id) ON DELETE SET NULL,
    hashed_password       text NOT NULL,
    password_salt         text NOT NULL,
    role                  text NOT NULL CHECK (role IN ('admin', 'coordinator', 'faculty', 'resident')),
    is_active             boolean NOT NULL DEFAULT true,
    is_locked             boolean NOT NULL DEFAULT false,
    locked_at             timestamptz,
    failed_login_attempts integer NOT NULL DEFAULT 0,
    mfa_enabled           boolean NOT NULL DEFAULT false,
    last_login            timestamptz,
    password_changed_at   timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    ip_address  inet,
    user_agent  text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    user_id     integer REFERENCES users (id) ON DELETE SET NULL,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    details     jsonb NOT NULL DEFAULT '{}',
    ip_address  inet
);
CREATE INDEX audit_log_occurred_at_idx ON audit_log (occurred_at);
