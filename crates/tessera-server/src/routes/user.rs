//! Registration, login, logout, password change and who-am-I.

use axum::extract::State;
use tessera::{AuthUser, Session, UserId};

use super::params::{Params, QueryParams};
use super::requests::{ChangePasswordRequest, GetOtpRequest, GetUserQuery, LoginProof, LoginRequest, RegisterRequest};
use super::responses::{
    CsrfResponse, GetUserResponse, GrantResponse, PasswordChangedResponse, RevokedResponse, UserResponse,
};
use super::AppState;
use crate::client_ip::ClientAddress;
use crate::credentials;
use crate::domain::{OtpCode, Password, Telephone};
use crate::envelope::{Serialized, Success};
use crate::error::ApiError;
use crate::limits;
use crate::metrics::{LoginMethod, LoginOutcome, OtpSendOutcome};
use crate::otp::Verdict;
use crate::users::User;

type ApiResult<T> = Result<Success<T>, ApiError>;

/// `POST /user/getotp`: the same answer for every valid phone.
pub async fn get_otp(
    State(state): State<AppState>,
    ip: ClientAddress,
    Params(request): Params<GetOtpRequest>,
) -> ApiResult<()> {
    let sent = match request.telephone() {
        Ok(phone) => state.otp.send(&phone, &ip.key()).await,
        Err(e) => Err(e),
    };
    state.metrics.otp_send(OtpSendOutcome::of(&sent));
    sent.map(Success)
}

/// `POST /user/register`
pub async fn register(
    State(state): State<AppState>,
    Params(request): Params<RegisterRequest>,
) -> ApiResult<UserResponse> {
    let (code, user) = request.parse()?;
    // The code first: whether the phone is registered is told only to
    // someone who holds that phone.
    match state.otp.verify(&user.telephone, &code).await? {
        Verdict::Verified => {}
        Verdict::Mismatch => return Err(ApiError::OtpMismatch),
        Verdict::Expired => return Err(ApiError::OtpExpired),
    }
    let hash = credentials::hash(user.password.clone()).await?;
    let created = state.users.insert(&user, &hash).await?.ok_or(ApiError::AlreadyRegistered)?;
    tracing::info!(user = created.id, "user registered");
    Ok(Success(created.into()))
}

/// `POST /user/login`
pub async fn login(
    State(state): State<AppState>,
    ip: ClientAddress,
    session: Session,
    Params(request): Params<LoginRequest>,
) -> ApiResult<GrantResponse> {
    let address = ip.0;
    let mut attempt = Attempt { method: LoginMethod::Unknown, failure: None, phone: None };
    let result = attempt_login(&state, ip, &session, &request, &mut attempt).await;
    let outcome = LoginOutcome::of(&result, attempt.failure);
    state.metrics.login(attempt.method, outcome);
    if let Some(phone) = &attempt.phone {
        state.events.login_failed(phone, attempt.method, outcome, address);
    }
    result
}

/// What a login attempt was and, if it failed for want of a credential, why.
struct Attempt {
    method: LoginMethod,
    failure: Option<LoginOutcome>,
    /// The phone, once it parsed (for the `login.failed` event).
    phone: Option<Telephone>,
}

async fn attempt_login(
    state: &AppState,
    ip: ClientAddress,
    session: &Session,
    request: &LoginRequest,
    attempt: &mut Attempt,
) -> ApiResult<GrantResponse> {
    let phone = request.telephone()?;
    attempt.phone = Some(phone.clone());
    let buckets = login_buckets(state, &phone, &ip.key());
    let proof = request.proof();
    attempt.method = match proof {
        Ok(LoginProof::Otp(_)) => LoginMethod::Otp,
        Ok(LoginProof::Password(_)) => LoginMethod::Password,
        Err(_) => LoginMethod::Unknown,
    };
    // Every attempt takes a slot first (so a burst of parallel guesses is
    // counted); a success gives its slots back: only failures add up.
    limits::check(&*state.limiter, state.clock.now(), &buckets).await?;
    let checked = match proof? {
        LoginProof::Otp(code) => login_by_otp(state, &phone, code).await,
        LoginProof::Password(password) => login_by_password(state, &phone, password).await,
    };
    let user = checked.map_err(|(error, failure)| {
        attempt.failure = failure;
        error
    })?;
    limits::refund(&*state.limiter, &buckets).await?;
    // The profile stays on this node, out of the session store (see
    // profiles.rs): "who am I" from here costs no query.
    state.profiles.keep(user.clone());
    let grant = session.login(UserId::from(user.id)).await?;
    // An operator may have disabled the account while this login was under
    // way, after its check and before its session existed, which the
    // disabling then could not end: asked again now that it exists.
    if state.users.is_disabled(user.id).await? != Some(false) {
        session.logout().await?;
        attempt.failure = Some(LoginOutcome::Disabled);
        return Err(ApiError::AccountDisabled);
    }
    tracing::info!(user = user.id, "logged in");
    Ok(Success(GrantResponse::new(&grant, session.now(), Some(user))))
}
/// The login throttle buckets of `phone` from `ip`, under keyed pseudonyms.
/// The address's own bucket comes first: once it refuses, that address's
/// attempts count against nobody's phone.
fn login_buckets(state: &AppState, phone: &Telephone, ip: &str) -> [(String, limits::Limit); 3] {
    let (phone, ip) = (state.otp.pseudonym(phone.as_str()), state.otp.pseudonym(ip));
    let limits = &state.login_limits;
    [
        (format!("login-ip:{ip}"), limits.per_ip),
        (format!("login-phone-ip:{phone}:{ip}"), limits.per_phone_and_ip),
        (format!("login-phone:{phone}"), limits.per_phone),
    ]
}

/// A refused login: the answer, and for `/metrics` why (`None`: the
/// error says).
type Refusal = (ApiError, Option<LoginOutcome>);

fn refused(reason: LoginOutcome) -> Refusal {
    (ApiError::LoginFailed, Some(reason))
}

fn failed(error: impl Into<ApiError>) -> Refusal {
    (error.into(), None)
}

async fn login_by_password(state: &AppState, phone: &Telephone, password: &str) -> Result<User, Refusal> {
    let password = Password::offered(password).ok_or_else(|| refused(LoginOutcome::BadPassword))?;
    let found = state.users.by_phone(phone).await.map_err(failed)?;
    let (account, hash) = match found {
        Some(account) => {
            let hash = account.password_hash.clone();
            (Some(account), Some(hash))
        }
        None => (None, None),
    };
    // Verified even for an unknown phone (against a dummy hash), so the
    // answer takes as long either way.
    let ok = credentials::verify(password, hash).await.map_err(failed)?;
    match account {
        Some(account) if ok => enabled(account),
        Some(_) => Err(refused(LoginOutcome::BadPassword)),
        None => Err(refused(LoginOutcome::UnknownUser)),
    }
}

/// The account's user, unless an operator disabled it. Told only to a
/// caller who has just proved the credential (password or code), so it
/// reveals nothing to anyone guessing.
fn enabled(account: crate::users::Account) -> Result<User, Refusal> {
    if account.is_disabled() {
        return Err((ApiError::AccountDisabled, Some(LoginOutcome::Disabled)));
    }
    Ok(account.user)
}

async fn login_by_otp(state: &AppState, phone: &Telephone, code: &str) -> Result<User, Refusal> {
    let code = OtpCode::parse(code).map_err(|_| refused(LoginOutcome::WrongCode))?;
    match state.otp.verify(phone, &code).await.map_err(failed)? {
        Verdict::Verified => {}
        Verdict::Mismatch => return Err(refused(LoginOutcome::WrongCode)),
        Verdict::Expired => return Err(refused(LoginOutcome::ExpiredCode)),
    }
    let found = state.users.by_phone(phone).await.map_err(failed)?;
    found.ok_or_else(|| refused(LoginOutcome::UnknownUser)).and_then(enabled)
}

/// `POST /user/logout`: ends this session (idempotent).
pub async fn logout(session: Session) -> ApiResult<()> {
    session.logout().await?;
    Ok(Success(()))
}

/// `POST /user/logout-everywhere`: ends every session of the caller, this
/// one included; in token mode every access token they hold stops working
/// on every node.
pub async fn logout_everywhere(user: AuthUser) -> ApiResult<RevokedResponse> {
    let revoked = user.session.logout_everywhere().await?;
    Ok(Success(RevokedResponse { revoked }))
}

/// `POST /user/password`: the logged-in user changes their password,
/// proving the current one (or a code from `/user/getotp`; a wrong proof
/// answers and counts as a failed login). The caller's session is rotated
/// (a new token, as at login) and, unless `endOtherSessions` is false, every
/// other session and token family of the user ends on every node (OWASP
/// ASVS V3.3.3). A retry after a 503 is safe: the new password is then the
/// current one.
pub async fn change_password(
    State(state): State<AppState>,
    ip: ClientAddress,
    user: AuthUser,
    Params(request): Params<ChangePasswordRequest>,
) -> ApiResult<PasswordChangedResponse> {
    let change = request.parse()?;
    let id = user_id(&user)?;
    let session = &user.session;
    let account = match state.users.account(id).await? {
        Some(account) if !account.is_disabled() => account,
        // The account is gone or disabled: so is the right to this session.
        _ => {
            session.logout().await?;
            return Err(tessera::SessionError::NotLoggedIn.into());
        }
    };
    let phone = Telephone::parse(&account.user.telephone).map_err(ApiError::internal)?;
    let buckets = login_buckets(&state, &phone, &ip.key());
    limits::check(&*state.limiter, state.clock.now(), &buckets).await?;
    let proven = match change.proof {
        LoginProof::Password(offered) => match Password::offered(offered) {
            Some(offered) => credentials::verify(offered, Some(account.password_hash.clone())).await?,
            None => false,
        },
        LoginProof::Otp(code) => match OtpCode::parse(code) {
            Ok(code) => state.otp.verify(&phone, &code).await? == Verdict::Verified,
            Err(_) => false,
        },
    };
    if !proven {
        return Err(ApiError::LoginFailed);
    }
    limits::refund(&*state.limiter, &buckets).await?;
    let hash = credentials::hash(change.new_password).await?;
    if !state.users.set_password(id, &hash).await? {
        return Err(ApiError::internal(format!("user {id} has no password row")));
    }
    // The caller's session goes on under a new token (what a token taken
    // before the change is worth ends with it); then the others end, this
    // new one kept.
    state.profiles.keep(account.user.clone());
    let grant = session.login(UserId::from(id)).await?;
    let revoked = if change.end_others { session.revoke_others().await? } else { 0 };
    tracing::info!(user = id, revoked, "password changed");
    Ok(Success(PasswordChangedResponse {
        grant: GrantResponse::new(&grant, session.now(), Some(account.user)),
        revoked,
    }))
}

fn user_id(user: &AuthUser) -> Result<i64, ApiError> {
    // Our own sessions only ever hold numeric ids.
    user.user_id.as_str().parse().map_err(ApiError::internal)
}

/// `GET /user/me`: the profile from this node's cache (see profiles.rs),
/// from the database on a miss; the session store holds none.
pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Serialized, ApiError> {
    match state.profiles.me_answer(user_id(&user)?).await? {
        Some(answer) => Ok(Serialized(answer)),
        None => {
            // The account is gone: so is the right to this session.
            user.session.logout().await?;
            Err(tessera::SessionError::NotLoggedIn.into())
        }
    }
}

/// `GET /user/get?id=N` for a logged-in caller: the whole profile for the
/// caller's own id, the public part (no telephone) for anyone else's.
pub async fn get_user(
    State(state): State<AppState>,
    caller: AuthUser,
    QueryParams(query): QueryParams<GetUserQuery>,
) -> ApiResult<GetUserResponse> {
    let id = query.id()?;
    let found = state.profiles.get(id).await?.ok_or(ApiError::UserNotExist)?;
    if id == user_id(&caller)? {
        return Ok(Success(GetUserResponse::Own(found.into())));
    }
    Ok(Success(GetUserResponse::Other(found.into())))
}

/// `GET /user/csrf`: the synchronizer token for a cookie session, for
/// pages that were reloaded after login.
pub async fn csrf(user: AuthUser) -> ApiResult<CsrfResponse> {
    let token = user.session.csrf_token().await?.ok_or(tessera::SessionError::NotLoggedIn)?;
    Ok(Success(CsrfResponse { csrf_token: token.expose() }))
}
