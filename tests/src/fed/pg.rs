//! PostgreSQL: one database per test.

use super::*;

pub(crate) static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh database `t_<pid>_<n>` on the `ROOST_TEST_PG_URL` server; dropped on drop.
#[derive(Debug)]
pub struct PgDb {
    admin: String,
    /// Its name.
    pub name: String,
    /// The URL central gets (`--db`).
    pub url: String,
}

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split_once('/').map(|(a, _)| a).unwrap_or(rest);
    format!("{scheme}://{authority}/{db}{query}")
}

pub(crate) async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL at ROOST_TEST_PG_URL ({url}): {e}")
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

impl PgDb {
    /// Create the database (and drop those crashed runs left).
    pub async fn create() -> Self {
        let admin = pg_admin_url().expect("ROOST_TEST_PG_URL is set");
        let c = pg_connect(&admin).await;
        let rows = c
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            let name: String = r.get(0);
            let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
        }
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_db(&admin, &name);
        Self { admin, name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
