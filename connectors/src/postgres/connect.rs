//! A connection to a PostgreSQL server, named without its password in every error.

use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{ConnectorError, Result};

/// A server to connect to: the connection string (a `postgres://` URL or `key=value`
/// pairs, as libpq takes them) and how errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    url: String,
    /// `user@host:port/database`, never the password.
    pub target: String,
}

impl Connection {
    /// Parses `url`; fails, naming what is wrong, on a malformed one.
    pub fn parse(url: &str) -> Result<Self> {
        let config = Config::from_str(url).map_err(|e| ConnectorError::Option {
            key: "connection".into(),
            message: format!("not a PostgreSQL connection string ({e})"),
        })?;
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!(
            "{}@{host}:{port}/{}",
            config.get_user().unwrap_or("postgres"),
            config.get_dbname().unwrap_or_default()
        );
        Ok(Self {
            url: url.to_string(),
            target,
        })
    }

    /// The connection string, password included (it travels in task plans).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An error about this server (and `what` on it, such as a table).
    pub fn error(&self, what: &str, message: impl Into<String>) -> ConnectorError {
        ConnectorError::Postgres {
            target: if what.is_empty() {
                self.target.clone()
            } else {
                format!("{} {what}", self.target)
            },
            message: message.into(),
        }
    }

    /// `e` in one line: the server's own message where it sent one.
    pub fn explain(e: &tokio_postgres::Error) -> String {
        if let Some(db) = e.as_db_error() {
            return db.message().to_string();
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        text
    }

    /// Connects, with the session settings that the CSV exchange relies on (ISO dates,
    /// UTC, floats that read back exactly).
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|e| self.error("", format!("cannot connect: {}", Self::explain(&e))))?;
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%target, "PostgreSQL connection ended: {e}");
            }
        });
        client
            .batch_execute(
                "SET DateStyle = 'ISO'; SET TimeZone = 'UTC'; SET extra_float_digits = 3",
            )
            .await
            .map_err(|e| self.error("", Self::explain(&e)))?;
        Ok(client)
    }
}

/// `name` (`table` or `schema.table`) quoted as a PostgreSQL identifier.
pub fn quote_name(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_hold_the_password() {
        let c = Connection::parse("postgres://ember:secret@127.0.0.1:5433/tpch").expect("valid");
        assert_eq!(c.target, "ember@127.0.0.1:5433/tpch");
        assert!(!c.error("orders", "x").to_string().contains("secret"));
        let c = Connection::parse("host=db user=u dbname=d password=p").expect("valid");
        assert_eq!(c.target, "u@db:5432/d");
        assert!(Connection::parse("postgres://[::1").is_err());
        assert_eq!(quote_name("s.t\"x"), "\"s\".\"t\"\"x\"");
    }
}
