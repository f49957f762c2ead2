//! Registration, login, logout and who-am-I.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Extension;
use serde_json::{json, Value};
use tessera::{AuthUser, CarrierKind, ClientIp, Key, LoginGrant, Session, UserId};

use crate::envelope::Success;

use super::params::Params;
use super::AppState;
use crate::credentials;
use crate::domain::new_user::RegistrationFields;
use crate::domain::{NewUser, OtpCode, Password, Telephone};
use crate::error::ApiError;
use crate::limits;
use crate::otp::Verdict;
use crate::users::User;

type ApiResult = Result<Success<Value>, ApiError>;

/// The logged-in user's profile, kept in the session at login (as the
/// course kept LOGIN_USER) so that "who am I" costs no database query.
pub const LOGIN_USER: Key<User> = Key::new("user");

fn telephone(params: &Params) -> Result<Telephone, ApiError> {
    let raw = params.telephone().ok_or_else(|| ApiError::Validation("手机号不能为空".into()))?;
    Telephone::parse(raw).map_err(|e| ApiError::Validation(e.to_string()))
}

fn otp_code(raw: &str) -> Result<OtpCode, ApiError> {
    OtpCode::parse(raw).map_err(|e| ApiError::Validation(e.to_string()))
}

fn client(ip: Option<Extension<ClientIp>>) -> String {
    ip.map(|Extension(ClientIp(ip))| ip.to_string()).unwrap_or_else(|| "unknown".into())
}

/// `POST /user/getotp {telephone}`: the same answer for every valid phone.
pub async fn get_otp(State(state): State<AppState>, ip: Option<Extension<ClientIp>>, params: Params) -> ApiResult {
    let phone = telephone(&params)?;
    state.otp.send(&phone, &client(ip)).await?;
    Ok(Success(Value::Null))
}

/// `POST /user/register {telephone, otpCode, name, gender, age, password}`
pub async fn register(State(state): State<AppState>, params: Params) -> ApiResult {
    let code = params.get("otpCode").ok_or_else(|| ApiError::Validation("短信验证码不能为空".into()));
    let user = NewUser::parse(RegistrationFields {
        name: params.get("name"),
        gender: params.get("gender"),
        age: params.get("age"),
        telephone: params.telephone(),
        password: params.raw("password"),
    });
    let (code, user) = match (code, user) {
        (Ok(code), Ok(user)) => (otp_code(code)?, user),
        (Err(ApiError::Validation(a)), Err(b)) => return Err(ApiError::Validation(format!("{a},{b}"))),
        (Err(e), _) => return Err(e),
        (_, Err(b)) => return Err(ApiError::Validation(b)),
    };
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
    Ok(Success(json!(created)))
}

/// `POST /user/login {telephone, password}` or `{telephone, otpCode}`.
pub async fn login(
    State(state): State<AppState>,
    ip: Option<Extension<ClientIp>>,
    session: Session,
    params: Params,
) -> ApiResult {
    let phone = telephone(&params)?;
    let buckets = login_buckets(&state, &phone, &client(ip));
    // Every attempt takes a slot first (so a burst of parallel guesses is
    // counted); a success gives its slots back: only failures add up.
    limits::check(&*state.limiter, state.clock.now(), &buckets).await?;
    let user = match (params.get("otpCode"), params.raw("password")) {
        (Some(code), _) => login_by_otp(&state, &phone, code).await?,
        (None, Some(password)) => login_by_password(&state, &phone, password).await?,
        (None, None) => return Err(ApiError::Validation("密码不能为空".into())),
    };
    limits::refund(&*state.limiter, &buckets).await?;
    // Set before login so that it is written with the new session: login
    // stays one store operation.
    session.insert(LOGIN_USER, &user).await?;
    let grant = session.login(UserId::from(user.id)).await?;
    tracing::info!(user = user.id, "logged in");
    let mut body = grant_body(&grant, session.now());
    body["user"] = json!(user);
    Ok(Success(body))
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

/// What a login or refresh tells the client. Header clients get their
/// credentials in the body (`token` is the access token in token mode, so
/// clients written for opaque tokens keep working); browsers get cookies
/// and only the CSRF token.
pub fn grant_body(grant: &LoginGrant, now: tessera::Timestamp) -> Value {
    let mut body = match grant.carrier {
        CarrierKind::Header => json!({"token": grant.token()}),
        CarrierKind::Cookie => json!({"csrfToken": grant.csrf_token.expose()}),
    };
    if let Some(expires_in) = grant.expires_in(now) {
        body["expiresIn"] = json!(expires_in);
        if grant.carrier == CarrierKind::Header {
            body["accessToken"] = json!(grant.token());
            body["refreshToken"] = json!(grant.refresh_token());
            body["tokenType"] = json!("Bearer");
        }
    }
    body
}

async fn login_by_password(state: &AppState, phone: &Telephone, password: &str) -> Result<User, ApiError> {
    let password = Password::offered(password).ok_or(ApiError::LoginFailed)?;
    let found = state.users.by_phone(phone).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // Verified even for an unknown phone (against a dummy hash), so the
    // answer takes as long either way.
    let ok = credentials::verify(password, hash).await?;
    user.filter(|_| ok).ok_or(ApiError::LoginFailed)
}

async fn login_by_otp(state: &AppState, phone: &Telephone, code: &str) -> Result<User, ApiError> {
    let code = OtpCode::parse(code).map_err(|_| ApiError::LoginFailed)?;
    if state.otp.verify(phone, &code).await? != Verdict::Verified {
        return Err(ApiError::LoginFailed);
    }
    let found = state.users.by_phone(phone).await?;
    found.map(|(user, _)| user).ok_or(ApiError::LoginFailed)
}

/// `POST /user/logout`: ends this session (idempotent).
pub async fn logout(session: Session) -> ApiResult {
    session.logout().await?;
    Ok(Success(Value::Null))
}

/// `POST /user/logout-everywhere`: ends every session of the caller, this
/// one included; in token mode every access token they hold stops working
/// on every node.
pub async fn logout_everywhere(user: AuthUser) -> ApiResult {
    let ended = user.session.logout_everywhere().await?;
    Ok(Success(json!({"revoked": ended})))
}

fn user_id(user: &AuthUser) -> Result<i64, ApiError> {
    // Our own sessions only ever hold numeric ids.
    user.user_id.as_str().parse().map_err(ApiError::internal)
}

/// `GET /user/me`: from the session; from the database only for sessions
/// that predate the profile attribute.
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult {
    if let Some(profile) = user.session.get(LOGIN_USER).await? {
        return Ok(Success(json!(profile)));
    }
    match state.users.by_id(user_id(&user)?).await? {
        Some(found) => Ok(Success(json!(found))),
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
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let id = query.get("id").ok_or_else(|| ApiError::Validation("用户id不能为空".into()))?;
    let id: i64 = id.trim().parse().map_err(|_| ApiError::Validation("用户id必须是整数".into()))?;
    let found = state.users.by_id(id).await?.ok_or(ApiError::UserNotExist)?;
    if id == user_id(&caller)? {
        return Ok(Success(json!(found)));
    }
    // Another user's public profile only: a telephone is its owner's
    // business, never a directory to harvest.
    Ok(Success(json!(PublicProfile::from(found))))
}

/// What any logged-in user may see of another.
#[derive(Debug, serde::Serialize)]
struct PublicProfile {
    id: i64,
    name: String,
    gender: i64,
    age: i64,
}

impl From<User> for PublicProfile {
    fn from(user: User) -> Self {
        Self { id: user.id, name: user.name, gender: user.gender, age: user.age }
    }
}

/// `GET /user/csrf`: the synchronizer token for a cookie session, for
/// pages that were reloaded after login.
pub async fn csrf(user: AuthUser) -> ApiResult {
    let token = user.session.csrf_token().await?.ok_or(tessera::SessionError::NotLoggedIn)?;
    Ok(Success(json!({"csrfToken": token.expose()})))
}
