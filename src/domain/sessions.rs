//! Sessions: rotating refresh tokens (with the reuse grace window and theft detection),
//! revocation, logout and Bearer authentication.

use uuid::Uuid;

use super::types::{AuditEntry, AuditEvent, RefreshToken, Rotated, Session, UnixMillis};
use super::{AuthService, Authenticated, Client, Fault, TokenPair};
use crate::crypto::refresh;
use crate::metrics::RefreshOutcome;
use crate::store::Rotation;
use authgate_verify::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh token is unknown, expired, spent or revoked")]
    InvalidRefreshToken,
    #[error(transparent)]
    Fault(Fault),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    /// Why is for the logs, not for whoever presented the token.
    #[error("access token rejected: {0}")]
    Rejected(#[from] VerifyError),
    #[error("the session of this access token has ended")]
    SessionEnded,
    #[error(transparent)]
    Fault(Fault),
}

#[derive(Debug, thiserror::Error)]
pub enum EndSessionError {
    #[error("no live session of yours has this id")]
    NotFound,
    #[error(transparent)]
    Fault(Fault),
}

faults_convert!(RefreshError, AuthenticateError, EndSessionError);

impl AuthService {
    /// Rotates a refresh token; see CONTRACT.md "Sessions and refresh rotation".
    pub async fn refresh(
        &self,
        presented: &str,
        client: &Client,
    ) -> Result<TokenPair, RefreshError> {
        let hash = refresh::hash(presented);
        let actor = client.actor();
        let now = UnixMillis::now();
        let (successor, successor_hash) = refresh::generate();
        // The successor is kept (sealed) only when a grace window can return it.
        let sealed_successor =
            (self.policy.reuse_grace_secs > 0).then(|| refresh::seal(presented, &successor));
        let rotation = Rotation {
            presented_hash: &hash,
            successor_id: Uuid::now_v7(),
            successor_hash: &successor_hash,
            successor_ttl: std::time::Duration::from_secs(self.policy.refresh_ttl_secs),
            sealed_successor,
            actor: &actor,
            at: now,
        };
        // The common case first, in one round trip: an unspent token of a live session.
        if let Some(Rotated {
            session,
            successor_expires_at,
            subject,
        }) = self.store.rotate(&rotation).await?
        {
            // A revoke that committed while the rotation ran wins: the successor belongs
            // to an ended session and is never handed out.
            if !session.is_live_at(now) {
                self.metrics.refresh(RefreshOutcome::Rejected);
                return Err(RefreshError::InvalidRefreshToken);
            }
            self.metrics.refresh(RefreshOutcome::Rotated);
            return Ok(self.token_pair(
                &session,
                &subject,
                successor,
                successor_expires_at,
                now,
            )?);
        }

        // Nothing was spent: find out why.
        let reject = || {
            self.metrics.refresh(RefreshOutcome::Rejected);
            RefreshError::InvalidRefreshToken
        };
        let (row, session) = self
            .store
            .find_refresh_token(&hash)
            .await?
            .ok_or_else(reject)?;
        if row.spent_at.is_none() || !session.is_live_at(now) {
            // Unspent yet not rotated: the token or its session has expired or ended.
            return Err(reject());
        }
        if let Some((successor, expires_at)) = self.successor_in_grace(presented, &row, now).await?
        {
            // Re-checked as one write, so a revoke that has committed is never outrun.
            if !self
                .store
                .touch_live_session(session.id, &actor, now)
                .await?
            {
                return Err(reject());
            }
            let user = self
                .store
                .find_user(session.user_id)
                .await?
                .ok_or_else(reject)?;
            self.metrics.refresh(RefreshOutcome::SpentInGrace);
            return Ok(self.token_pair(&session, &user.subject(), successor, expires_at, now)?);
        }
        // Reuse outside the grace window: assume theft and end the whole session.
        self.metrics.refresh(RefreshOutcome::ReuseDetected);
        let theft = AuditEntry::new(AuditEvent::ReuseDetected, &actor, now)
            .user(session.user_id)
            .session(session.id);
        if self.store.revoke_session(session.id, &theft).await? {
            self.metrics.revoked("reuse_detected", 1);
            tracing::warn!(session_id = %session.id, user_id = %session.user_id,
                "refresh token reuse detected; session revoked");
        }
        Err(RefreshError::InvalidRefreshToken)
    }

    /// The successor of a spent token, if the token was spent within the grace window
    /// and its successor is still unspent.
    async fn successor_in_grace(
        &self,
        presented: &str,
        row: &RefreshToken,
        now: UnixMillis,
    ) -> Result<Option<(String, UnixMillis)>, RefreshError> {
        let grace = self.policy.reuse_grace_secs;
        let (Some(spent_at), Some(successor_id), Some(sealed)) = (
            row.spent_at,
            row.successor_id,
            row.sealed_successor.as_deref(),
        ) else {
            return Ok(None);
        };
        if grace == 0 || now > spent_at.plus_secs(grace) {
            return Ok(None);
        }
        let Some(successor_row) = self.store.find_refresh_token_by_id(successor_id).await? else {
            return Ok(None);
        };
        if successor_row.spent_at.is_some() || successor_row.expires_at <= now {
            return Ok(None);
        }
        Ok(refresh::open(presented, sealed)
            .filter(|successor| refresh::hash(successor)[..] == successor_row.token_hash[..])
            .map(|successor| (successor, successor_row.expires_at)))
    }

    /// Ends the session of a refresh token, spent or not. Unknown tokens are ignored
    /// (RFC 7009).
    pub async fn revoke(&self, presented: &str, client: &Client) -> Result<(), Fault> {
        let found = self
            .store
            .find_refresh_token(&refresh::hash(presented))
            .await?;
        let actor = client.actor();
        if let Some((_, session)) = found
            && self
                .store
                .revoke_session(
                    session.id,
                    &AuditEntry::new(AuditEvent::Revoke, &actor, UnixMillis::now())
                        .user(session.user_id)
                        .session(session.id),
                )
                .await?
        {
            self.metrics.revoked("revoke", 1);
        }
        Ok(())
    }

    pub async fn logout_all(&self, user_id: Uuid, client: &Client) -> Result<(), Fault> {
        let actor = client.actor();
        let audit = AuditEntry::new(AuditEvent::LogoutAll, &actor, UnixMillis::now()).user(user_id);
        let ended = self
            .store
            .revoke_user_sessions(user_id, None, &audit)
            .await?;
        self.metrics.revoked("logout_all", ended);
        Ok(())
    }

    /// Ends every session of the caller but the one of its token.
    pub async fn logout_others(
        &self,
        caller: &Authenticated,
        client: &Client,
    ) -> Result<(), Fault> {
        let actor = client.actor();
        let audit = AuditEntry::new(AuditEvent::LogoutOthers, &actor, UnixMillis::now())
            .user(caller.user.id)
            .session(caller.claims.sid);
        let ended = self
            .store
            .revoke_user_sessions(caller.user.id, Some(caller.claims.sid), &audit)
            .await?;
        self.metrics.revoked("logout_others", ended);
        Ok(())
    }

    /// The caller's live sessions, most recently used first.
    pub async fn sessions_of(&self, caller: &Authenticated) -> Result<Vec<Session>, Fault> {
        let mut sessions = self
            .store
            .live_sessions_of(caller.user.id, UnixMillis::now())
            .await?;
        sessions.sort_by_key(|session| std::cmp::Reverse(session.last_used_at()));
        Ok(sessions)
    }

    /// Ends one of the caller's live sessions.
    pub async fn end_session(
        &self,
        caller: &Authenticated,
        session_id: Uuid,
        client: &Client,
    ) -> Result<(), EndSessionError> {
        let actor = client.actor();
        let now = UnixMillis::now();
        let audit = AuditEntry::new(AuditEvent::SessionRevoked, &actor, now)
            .user(caller.user.id)
            .session(session_id);
        if !self
            .store
            .revoke_live_session_of(caller.user.id, session_id, &audit)
            .await?
        {
            return Err(EndSessionError::NotFound);
        }
        self.metrics.revoked("session_revoked", 1);
        Ok(())
    }

    /// Verifies an access token and checks that its session is still live.
    pub async fn authenticate(&self, bearer: &str) -> Result<Authenticated, AuthenticateError> {
        let claims = self.verifier.verify_cached(bearer)?;
        let user = self
            .store
            .live_session_user(claims.sid, claims.sub, UnixMillis::now())
            .await?
            .ok_or(AuthenticateError::SessionEnded)?;
        Ok(Authenticated { user, claims })
    }
}
