//! Database mode (`DEMO_DATABASE_URL`): the app keeps users in PostgreSQL through
//! tokio-postgres, so that a schema change can be rolled out under a load that writes.
//!
//! The two revisions of the seed's users/email example are one switch apart:
//! without `DEMO_USERS_EMAIL` (v1) a user is written as `(name)` and read back as its name;
//! with it (v2) a user is written as `(name, email)` and read back with its email. v1 never
//! names `email`, so it keeps working once expand added the column; v2 needs the column, so
//! it must start after expand.
//!
//! One client is shared by every request (tokio-postgres pipelines them) and made again when
//! the server closed it. `/health` answers 503 while the database cannot be reached, so that
//! a container that cannot write never receives traffic. The URL's password is never
//! printed: the app names its database as `user@host:port/dbname`.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The users table, seen by one revision of the app.
pub struct Db {
    config: Config,
    /// Whether this revision writes and reads `email` (v2).
    with_email: bool,
    client: Mutex<Option<Arc<Client>>>,
    target: String,
}

/// A user as this revision reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    /// Read by the email revision only (and `None` for a row nobody filled yet).
    pub email: Option<String>,
}

impl Db {
    /// Parses `url` (a `postgresql://` URL or key=value string). The error never repeats
    /// the URL, which may hold a password.
    pub fn parse(url: &str, with_email: bool) -> Result<Db, String> {
        let mut config: Config = url.parse().map_err(|_| {
            "DEMO_DATABASE_URL is not a PostgreSQL connection URL (postgresql://user@host:port/dbname)"
                .to_string()
        })?;
        if config.get_hosts().is_empty() {
            return Err("DEMO_DATABASE_URL names no host".into());
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("demo-app");
        let target = describe(&config);
        Ok(Db {
            config,
            with_email,
            client: Mutex::new(None),
            target,
        })
    }

    /// `user@host:port/dbname`, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether this revision writes and reads `email`.
    pub fn with_email(&self) -> bool {
        self.with_email
    }

    /// The shared client, connected again if the last one closed.
    async fn client(&self) -> Result<Arc<Client>, String> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.target))?;
        tokio::spawn(async move {
            // The client sees the end as is_closed(); the error itself is said once here.
            if let Err(e) = connection.await {
                eprintln!("demo-app: database connection ended: {e}");
            }
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Whether the database answers (for `/health`).
    pub async fn ready(&self) -> bool {
        match self.client().await {
            Ok(c) => c.simple_query("").await.is_ok(),
            Err(_) => false,
        }
    }

    /// Inserts a user named `name`; returns it as this revision wrote it.
    pub async fn insert(&self, name: &str) -> Result<User, String> {
        let c = self.client().await?;
        let (row, email) = if self.with_email {
            let email = email_of(name);
            let row = c
                .query_one(
                    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id",
                    &[&name, &email],
                )
                .await;
            (row, Some(email))
        } else {
            let row = c
                .query_one(
                    "INSERT INTO users (name) VALUES ($1) RETURNING id",
                    &[&name],
                )
                .await;
            (row, None)
        };
        let row = row.map_err(|e| format!("cannot insert user {name:?}: {e}"))?;
        Ok(User {
            id: row.get(0),
            name: name.to_string(),
            email,
        })
    }

    /// The user `id`, if there is one.
    pub async fn get(&self, id: i64) -> Result<Option<User>, String> {
        let c = self.client().await?;
        let sql = if self.with_email {
            "SELECT id, name, email FROM users WHERE id = $1"
        } else {
            "SELECT id, name FROM users WHERE id = $1"
        };
        let row = c
            .query_opt(sql, &[&id])
            .await
            .map_err(|e| format!("cannot read user {id}: {e}"))?;
        Ok(row.map(|r| User {
            id: r.get(0),
            name: r.get(1),
            email: if self.with_email { r.get(2) } else { None },
        }))
    }
}

/// The address the email revision gives a user (the backfill of the example writes the same).
pub fn email_of(name: &str) -> String {
    format!("{name}@example.invalid")
}

/// `user@host:port/dbname` of `config`, without the password.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("?");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{dbname}")
}

/// The user as JSON fields (`,"user":{...}`), for the answer.
pub fn user_json(u: &User) -> String {
    let email = match &u.email {
        Some(e) => format!(",\"email\":{}", crate::http::json_str(e)),
        None => String::new(),
    };
    format!(
        ",\"user\":{{\"id\":{},\"name\":{}{email}}}",
        u.id,
        crate::http::json_str(&u.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_no_password() {
        let db = Db::parse("postgresql://app:s3cret@10.0.0.5:6543/shop", false).unwrap();
        assert_eq!(db.target(), "app@10.0.0.5:6543/shop");
        let db = Db::parse("host=db user=app password=s3cret", true).unwrap();
        assert_eq!(db.target(), "app@db:5432/app");
        assert!(db.with_email());
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let e = Db::parse("postgresql://app:s3cret@host:notaport/x", false)
            .err()
            .unwrap();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("DEMO_DATABASE_URL"), "{e}");
        assert!(Db::parse("user=app password=s3cret", false).is_err());
    }

    #[test]
    fn users_render_with_email_only_when_read() {
        let mut u = User {
            id: 7,
            name: "ann".into(),
            email: None,
        };
        assert_eq!(user_json(&u), ",\"user\":{\"id\":7,\"name\":\"ann\"}");
        u.email = Some(email_of("ann"));
        assert_eq!(
            user_json(&u),
            ",\"user\":{\"id\":7,\"name\":\"ann\",\"email\":\"ann@example.invalid\"}"
        );
    }
}
