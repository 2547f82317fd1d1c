//! sea-orm entities, one module per table (see the `migration` crate for the schema).
//! Timestamps are Unix milliseconds.

pub mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub email: String,
        pub password_hash: String,
        pub created_at: i64,
        pub email_verified: bool,
        /// When a message of each kind was last queued (one per account per minute).
        pub reset_sent_at: Option<i64>,
        pub verification_sent_at: Option<i64>,
        /// Space-separated, sorted.
        pub roles: String,
        pub disabled: bool,
        pub last_login_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::sessions::Entity")]
        Sessions,
    }

    impl Related<super::sessions::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Sessions.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sessions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub created_at: i64,
        /// Absolute end of the session; no token outlives it.
        pub expires_at: i64,
        /// Last rotation.
        pub refreshed_at: Option<i64>,
        pub revoked_at: Option<i64>,
        /// Of the latest login or refresh, truncated as the audit trail stores them.
        pub client_ip: Option<String>,
        pub user_agent: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::users::Entity",
            from = "Column::UserId",
            to = "super::users::Column::Id"
        )]
        User,
        #[sea_orm(has_many = "super::refresh_tokens::Entity")]
        RefreshTokens,
    }

    impl Related<super::users::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl Related<super::refresh_tokens::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::RefreshTokens.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refresh_tokens {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub session_id: Uuid,
        /// SHA-256 of the token; the token itself is never stored.
        #[sea_orm(unique)]
        pub token_hash: Vec<u8>,
        pub created_at: i64,
        /// Idle expiry, never past the session's end.
        pub expires_at: i64,
        pub spent_at: Option<i64>,
        pub successor_id: Option<Uuid>,
        /// The successor token sealed with a key derived from this token; erased once the
        /// reuse grace window has passed.
        pub sealed_successor: Option<Vec<u8>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::sessions::Entity",
            from = "Column::SessionId",
            to = "super::sessions::Column::Id"
        )]
        Session,
    }

    impl Related<super::sessions::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Session.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod signing_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        /// Empty once sealed; a plaintext PEM only in a database written before keys
        /// were sealed, until the first start with a master key.
        pub private_key_pem: String,
        /// Base64url Ed25519 public key (JWK `x`).
        pub public_key: String,
        pub created_at: i64,
        /// From then on no longer signs (set in advance by a rotation).
        pub retired_at: Option<i64>,
        /// The PKCS#8 PEM sealed under the master key, bound to `kid`.
        pub sealed_private_key: Option<String>,
        /// From then on signs; `None` (keys stored before lifecycles): `created_at`.
        pub activates_at: Option<i64>,
        /// Withdrawn: out of the JWKS and never signs again.
        pub revoked_at: Option<i64>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SigningKey")
                .field("kid", &self.kid)
                .field("created_at", &self.created_at)
                .field("retired_at", &self.retired_at)
                .field("activates_at", &self.activates_at)
                .field("revoked_at", &self.revoked_at)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_events {
    use sea_orm::entity::prelude::*;

    /// One security event, written in the transaction of the change it records.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub at: i64,
        pub event: String,
        pub user_id: Option<Uuid>,
        pub session_id: Option<Uuid>,
        pub client_ip: Option<String>,
        pub user_agent: Option<String>,
        pub detail: Option<String>,
        /// The admin key (or client) that made the change; `None` for the user.
        pub actor: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod account_tokens {
    use sea_orm::entity::prelude::*;

    /// A single-use password-reset or email-verification token, stored as its hash.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "account_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub kind: String,
        /// The address the token was sent to.
        pub email: String,
        #[sea_orm(unique)]
        pub token_hash: Vec<u8>,
        pub created_at: i64,
        pub expires_at: i64,
        pub used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outbox {
    use sea_orm::entity::prelude::*;

    /// A message waiting for delivery; deleted once delivered or once its token expired.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub kind: String,
        pub user_id: Uuid,
        pub email: String,
        /// Sealed under the master key, bound to `id`.
        pub sealed_token: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub due_at: i64,
        pub attempts: i32,
        pub claimed_until: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod event_deliveries {
    use sea_orm::entity::prelude::*;

    /// One event on its way to one subscriber (named by its URL).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub event_id: Uuid,
        pub event_type: String,
        pub subscriber: String,
        /// The JSON body, the same on every attempt.
        pub body: String,
        /// `pending`, `delivered` or `failed`.
        pub status: String,
        pub attempts: i32,
        pub created_at: i64,
        pub next_attempt_at: i64,
        pub claimed_until: i64,
        pub last_attempt_at: Option<i64>,
        pub last_status: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod clients {
    use sea_orm::entity::prelude::*;

    /// A service client; its secret stored as SHA-256.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub client_id: String,
        pub secret_hash: Vec<u8>,
        pub name: String,
        /// Space-separated.
        pub scopes: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod admin_keys {
    use sea_orm::entity::prelude::*;

    /// A key of the admin API, stored as its SHA-256.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "admin_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub name: String,
        #[sea_orm(unique)]
        pub key_hash: Vec<u8>,
        pub created_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ended_sessions {
    use sea_orm::entity::prelude::*;

    /// A session of a deleted account, kept for the revocation feed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ended_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sid: Uuid,
        pub ended_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
