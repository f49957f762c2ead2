//! The actix peer: actix-web 4 with actix-session's `RedisSessionStore`
//! (redis-rs), as its docs show: a private (encrypted) session-key cookie and
//! the session state in Redis. `POST /login` creates a session holding the
//! next user's profile; `GET /user/me` reads it (one Redis GET).
//! Env: BIND, REDIS_URL.
use std::sync::atomic::{AtomicI64, Ordering};

use actix_session::storage::RedisSessionStore;
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::{web, App, HttpResponse, HttpServer};
use tessera_bench_peers::{success, Profile, NOT_LOGGED_IN};

async fn login(next_id: web::Data<AtomicI64>, session: Session) -> actix_web::Result<HttpResponse> {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    session.insert("user", Profile::of(id))?;
    Ok(HttpResponse::Ok().json(success(())))
}

async fn me(session: Session) -> actix_web::Result<HttpResponse> {
    Ok(match session.get::<Profile>("user")? {
        Some(user) => HttpResponse::Ok().json(success(user)),
        None => HttpResponse::Unauthorized().content_type("application/json").body(NOT_LOGGED_IN),
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let store = RedisSessionStore::new(tessera_bench_peers::redis_url()).await.unwrap();
    let key = Key::generate();
    let next_id = web::Data::new(AtomicI64::new(1));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(next_id.clone())
            .wrap(SessionMiddleware::builder(store.clone(), key.clone()).cookie_secure(false).build())
            .route("/login", web::post().to(login))
            .route("/user/me", web::get().to(me))
    })
    .bind(tessera_bench_peers::bind())?;
    println!("listening");
    server.run().await
}
