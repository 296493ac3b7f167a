//! The configuration-server database: SQLite in WAL mode, with versioned migrations and
//! online backup and restore.
//!
//! Everything failback needs lives here (the reference article: "if the configuration
//! server database contains no VM, failback cannot succeed"), so every state change is a
//! transaction and a backup is taken with SQLite's online backup API while jobs run.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::PipelineError;

/// The database file inside the data directory.
pub const DB_FILE: &str = "homeward.db";

/// Migrations in order; `PRAGMA user_version` is the number applied. Released entries
/// never change: a schema change is a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: the configuration server's objects.
    r#"
    CREATE TABLE sites(
        name TEXT PRIMARY KEY, role TEXT NOT NULL, plugin TEXT NOT NULL,
        info TEXT, inventory TEXT, discovered_ms INTEGER, discovery_error TEXT);
    CREATE TABLE policies(
        name TEXT PRIMARY KEY, direction TEXT NOT NULL, rpo_threshold_s INTEGER NOT NULL,
        retention_s INTEGER NOT NULL, app_consistent_s INTEGER NOT NULL, editable INTEGER NOT NULL);
    CREATE TABLE plans(name TEXT PRIMARY KEY, grp TEXT NOT NULL UNIQUE);
    CREATE TABLE groups(name TEXT PRIMARY KEY, detail TEXT NOT NULL);
    CREATE TABLE items(
        name TEXT PRIMARY KEY, grp TEXT NOT NULL, boot_order INTEGER NOT NULL, detail TEXT NOT NULL);
    CREATE TABLE process_servers(name TEXT PRIMARY KEY, detail TEXT NOT NULL, heartbeat_ms INTEGER);
    CREATE TABLE master_targets(name TEXT PRIMARY KEY, detail TEXT NOT NULL);
    CREATE TABLE recovery_points(
        grp TEXT NOT NULL, generation INTEGER NOT NULL, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL,
        consistency TEXT NOT NULL, direction TEXT NOT NULL, PRIMARY KEY(grp, generation, seq));
    CREATE TABLE jobs(
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, target TEXT NOT NULL,
        params TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL, started_ms INTEGER,
        finished_ms INTEGER, error TEXT, bytes_sent INTEGER NOT NULL DEFAULT 0,
        bytes_changed INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE steps(
        job INTEGER NOT NULL REFERENCES jobs(id), idx INTEGER NOT NULL, name TEXT NOT NULL,
        state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, started_ms INTEGER,
        finished_ms INTEGER, output TEXT, PRIMARY KEY(job, idx));
    CREATE TABLE events(
        id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, severity TEXT NOT NULL,
        object TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
    "#,
    // 2: scheduled backups remember when they last ran.
    r#"
    CREATE TABLE backups(id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, path TEXT NOT NULL);
    CREATE INDEX events_time ON events(time_ms);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// An open configuration database. Cheap to share behind an `Arc`; every call takes the
/// connection for one statement or transaction.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// One row of a table holding JSON details, by name.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    /// Replication groups.
    Groups,
    /// Protected items.
    Items,
    /// Process servers.
    ProcessServers,
    /// Master targets.
    MasterTargets,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Groups => "groups",
            Table::Items => "items",
            Table::ProcessServers => "process_servers",
            Table::MasterTargets => "master_targets",
        }
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> PipelineError + '_ {
    move |e| PipelineError::Database { path: path.to_path_buf(), message: e.to_string() }
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`, switches it to WAL and
    /// applies pending migrations. A database written by a newer Homeward is refused.
    pub fn open(data_dir: &Path) -> Result<Self, PipelineError> {
        std::fs::create_dir_all(data_dir).map_err(|e| PipelineError::Io { path: data_dir.to_path_buf(), message: e.to_string() })?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err(&path))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err(&path))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db_err(&path))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db_err(&path))?;
        let store = Self { path, conn: Mutex::new(conn) };
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection; a panic elsewhere cannot leave a half-done transaction behind
    /// (SQLite rolls it back), so poisoning is ignored.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> PipelineError + '_ {
        db_err(&self.path)
    }

    fn migrate(&self) -> Result<(), PipelineError> {
        let mut conn = self.conn();
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(self.err())?;
        if version > SCHEMA_VERSION {
            return Err(PipelineError::SchemaTooNew { path: self.path.clone(), found: version, supported: SCHEMA_VERSION });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(self.err())?;
            tx.execute_batch(sql).map_err(self.err())?;
            tx.pragma_update(None, "user_version", (i + 1) as u32).map_err(self.err())?;
            tx.commit().map_err(self.err())?;
            tracing::info!(version = i + 1, "applied schema migration");
        }
        Ok(())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, PipelineError> {
        self.conn().pragma_query_value(None, "user_version", |r| r.get(0)).map_err(self.err())
    }

    /// Writes an online backup of the database to `dest` (while jobs may be running) and
    /// records it.
    pub fn backup(&self, dest: &Path) -> Result<(), PipelineError> {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| PipelineError::Io { path: parent.to_path_buf(), message: e.to_string() })?;
        }
        let tmp = dest.with_extension("partial");
        let _ = std::fs::remove_file(&tmp);
        {
            let conn = self.conn();
            let mut out = Connection::open(&tmp).map_err(db_err(&tmp))?;
            let backup = rusqlite::backup::Backup::new(&conn, &mut out).map_err(db_err(&tmp))?;
            backup.run_to_completion(256, Duration::from_millis(5), None).map_err(db_err(&tmp))?;
        }
        // Only a finished copy takes the final name, so a crash never leaves a torn backup
        // where an operator would restore from.
        std::fs::rename(&tmp, dest).map_err(|e| PipelineError::Io { path: dest.to_path_buf(), message: e.to_string() })?;
        self.conn()
            .execute("INSERT INTO backups(time_ms, path) VALUES (?1, ?2)", params![now_ms() as i64, dest.display().to_string()])
            .map_err(self.err())?;
        Ok(())
    }

    /// When the last backup was taken, if ever.
    pub fn last_backup_ms(&self) -> Result<Option<u64>, PipelineError> {
        self.conn()
            .query_row("SELECT MAX(time_ms) FROM backups", [], |r| r.get::<_, Option<i64>>(0))
            .map(|v| v.map(|t| t as u64))
            .map_err(self.err())
    }

    /// Replaces the database in `data_dir` with the backup at `src`, after checking that
    /// the backup is a Homeward database this build can read. The current database is
    /// kept beside it as `homeward.db.before-restore`.
    pub fn restore(data_dir: &Path, src: &Path) -> Result<u32, PipelineError> {
        let probe = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_err(src))?;
        let version: u32 = probe.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| PipelineError::NotABackup {
            path: src.to_path_buf(),
            message: e.to_string(),
        })?;
        let has_items: bool = probe
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'", [], |_| Ok(true))
            .optional()
            .map_err(db_err(src))?
            .unwrap_or(false);
        if version == 0 || !has_items {
            return Err(PipelineError::NotABackup { path: src.to_path_buf(), message: "it has no Homeward schema".into() });
        }
        if version > SCHEMA_VERSION {
            return Err(PipelineError::SchemaTooNew { path: src.to_path_buf(), found: version, supported: SCHEMA_VERSION });
        }
        drop(probe);
        std::fs::create_dir_all(data_dir).map_err(|e| PipelineError::Io { path: data_dir.to_path_buf(), message: e.to_string() })?;
        let target = data_dir.join(DB_FILE);
        if target.exists() {
            // Checkpoint the WAL into the main file so the kept copy is whole.
            if let Ok(c) = Connection::open(&target) {
                let _ = c.pragma_update(None, "wal_checkpoint", "TRUNCATE");
            }
            std::fs::copy(&target, data_dir.join(format!("{DB_FILE}.before-restore")))
                .map_err(|e| PipelineError::Io { path: target.clone(), message: e.to_string() })?;
        }
        {
            let src_conn = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_err(src))?;
            let mut dst = Connection::open(&target).map_err(db_err(&target))?;
            let backup = rusqlite::backup::Backup::new(&src_conn, &mut dst).map_err(db_err(&target))?;
            backup.run_to_completion(256, Duration::from_millis(5), None).map_err(db_err(&target))?;
        }
        let store = Store::open(data_dir)?;
        store.schema_version()
    }

    // ---- JSON detail rows ----

    /// Inserts or replaces a row's JSON detail.
    pub fn put<T: Serialize>(&self, table: Table, name: &str, detail: &T) -> Result<(), PipelineError> {
        let json = serde_json::to_string(detail).expect("details serialize");
        let conn = self.conn();
        let sql = match table {
            Table::Items => "INSERT INTO items(name, grp, boot_order, detail) VALUES (?1, json_extract(?2, '$.group'), json_extract(?2, '$.boot_order'), ?2)
                             ON CONFLICT(name) DO UPDATE SET grp = excluded.grp, boot_order = excluded.boot_order, detail = excluded.detail",
            Table::ProcessServers => "INSERT INTO process_servers(name, detail, heartbeat_ms) VALUES (?1, ?2, json_extract(?2, '$.heartbeat_ms'))
                             ON CONFLICT(name) DO UPDATE SET detail = excluded.detail, heartbeat_ms = excluded.heartbeat_ms",
            _ => "",
        };
        let sql = if sql.is_empty() {
            format!("INSERT INTO {t}(name, detail) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET detail = excluded.detail", t = table.name())
        } else {
            sql.to_string()
        };
        conn.execute(&sql, params![name, json]).map_err(self.err())?;
        Ok(())
    }

    /// A row's JSON detail, if the row exists.
    pub fn get<T: DeserializeOwned>(&self, table: Table, name: &str) -> Result<Option<T>, PipelineError> {
        let json: Option<String> = self
            .conn()
            .query_row(&format!("SELECT detail FROM {} WHERE name = ?1", table.name()), [name], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        json.map(|j| decode(&self.path, table.name(), name, &j)).transpose()
    }

    /// Every row of a table, by name (items by boot order).
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, PipelineError> {
        let order = if matches!(table, Table::Items) { "grp, boot_order, name" } else { "name" };
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT name, detail FROM {} ORDER BY {order}", table.name())).map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json) = row.map_err(self.err())?;
            out.push(decode(&self.path, table.name(), &name, &json)?);
        }
        Ok(out)
    }

    /// Deletes a row; deleting a missing row is not an error.
    pub fn delete(&self, table: Table, name: &str) -> Result<(), PipelineError> {
        self.conn().execute(&format!("DELETE FROM {} WHERE name = ?1", table.name()), [name]).map_err(self.err())?;
        Ok(())
    }

    // ---- sites ----

    /// Records a site's discovered description and inventory (JSON).
    pub fn put_site(&self, name: &str, role: &str, plugin: &str, info: &str, inventory: &str, error: Option<&str>) -> Result<(), PipelineError> {
        self.conn()
            .execute(
                "INSERT INTO sites(name, role, plugin, info, inventory, discovered_ms, discovery_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(name) DO UPDATE SET role = excluded.role, plugin = excluded.plugin, info = excluded.info,
                   inventory = excluded.inventory, discovered_ms = excluded.discovered_ms, discovery_error = excluded.discovery_error",
                params![name, role, plugin, info, inventory, now_ms() as i64, error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// A site's stored inventory JSON and discovery error, if it was discovered.
    pub fn site_inventory(&self, name: &str) -> Result<Option<(String, Option<String>, u64)>, PipelineError> {
        self.conn()
            .query_row("SELECT inventory, discovery_error, discovered_ms FROM sites WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)? as u64))
            })
            .optional()
            .map_err(self.err())
    }

    // ---- policies ----

    /// Creates the forward policy and, with it, the failback policy, which cannot be
    /// edited (RPO threshold 15 min, retention 24 h, app-consistent every 60 min). Existing
    /// policies are left as they are.
    pub fn ensure_policies(&self, forward: &crate::model::Policy) -> Result<(), PipelineError> {
        let conn = self.conn();
        let failback = crate::model::Policy::failback();
        for (p, editable) in [(forward, true), (&failback, false)] {
            conn.execute(
                "INSERT OR IGNORE INTO policies(name, direction, rpo_threshold_s, retention_s, app_consistent_s, editable) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.name, p.direction.as_str(), p.rpo_threshold_s as i64, p.retention_s as i64, p.app_consistent_s as i64, editable],
            )
            .map_err(self.err())?;
        }
        Ok(())
    }

    /// Changes a policy; the failback policy is refused.
    pub fn edit_policy(&self, policy: &crate::model::Policy) -> Result<(), PipelineError> {
        let editable: Option<bool> =
            self.conn().query_row("SELECT editable FROM policies WHERE name = ?1", [&policy.name], |r| r.get(0)).optional().map_err(self.err())?;
        match editable {
            None => Err(PipelineError::NotFound { what: "policy", name: policy.name.clone(), fix: "list policies with `homeward policies`".into() }),
            Some(false) => Err(PipelineError::Refused {
                object: format!("policy {}", policy.name),
                message: "the failback policy is created with the forward policy and cannot be edited".into(),
                fix: "edit the forward policy instead; failback always uses RPO 15 min, retention 24 h, app-consistent every 60 min".into(),
            }),
            Some(true) => {
                self.conn()
                    .execute(
                        "UPDATE policies SET rpo_threshold_s = ?2, retention_s = ?3, app_consistent_s = ?4 WHERE name = ?1",
                        params![policy.name, policy.rpo_threshold_s as i64, policy.retention_s as i64, policy.app_consistent_s as i64],
                    )
                    .map_err(self.err())?;
                Ok(())
            }
        }
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Result<Option<crate::model::Policy>, PipelineError> {
        Ok(self.policies()?.into_iter().find(|(p, _)| p.name == name).map(|(p, _)| p))
    }

    /// Every policy.
    pub fn policies(&self) -> Result<Vec<(crate::model::Policy, bool)>, PipelineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, direction, rpo_threshold_s, retention_s, app_consistent_s, editable FROM policies ORDER BY name")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    crate::model::Policy {
                        name: r.get(0)?,
                        direction: crate::model::Direction::parse(&r.get::<_, String>(1)?),
                        rpo_threshold_s: r.get::<_, i64>(2)? as u64,
                        retention_s: r.get::<_, i64>(3)? as u64,
                        app_consistent_s: r.get::<_, i64>(4)? as u64,
                    },
                    r.get::<_, bool>(5)?,
                ))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    // ---- plans ----

    /// Creates or replaces a recovery plan over a group.
    pub fn put_plan(&self, name: &str, group: &str) -> Result<(), PipelineError> {
        self.conn()
            .execute("INSERT INTO plans(name, grp) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET grp = excluded.grp", params![name, group])
            .map_err(self.err())?;
        Ok(())
    }

    /// The group of a plan.
    pub fn plan_group(&self, plan: &str) -> Result<Option<String>, PipelineError> {
        self.conn().query_row("SELECT grp FROM plans WHERE name = ?1", [plan], |r| r.get(0)).optional().map_err(self.err())
    }

    /// The plan of a group, if any.
    pub fn group_plan(&self, group: &str) -> Result<Option<String>, PipelineError> {
        self.conn().query_row("SELECT name FROM plans WHERE grp = ?1", [group], |r| r.get(0)).optional().map_err(self.err())
    }

    /// Every plan with its group.
    pub fn plans(&self) -> Result<Vec<(String, String)>, PipelineError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, grp FROM plans ORDER BY name").map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    // ---- recovery points ----

    /// Records a recovery point of a group's replication generation.
    pub fn add_point(&self, group: &str, generation: u32, point: &crate::model::PointRecord) -> Result<(), PipelineError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO recovery_points(grp, generation, seq, time_ms, consistency, direction) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![group, generation, point.seq as i64, point.time_ms as i64, point.consistency, point.direction],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets points of a generation that the journal no longer holds (pruned or
    /// discarded by a rewind).
    pub fn retain_points(&self, group: &str, generation: u32, keep: &[u64]) -> Result<(), PipelineError> {
        let conn = self.conn();
        let list = keep.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
        conn.execute(
            &format!("DELETE FROM recovery_points WHERE grp = ?1 AND generation = ?2 AND seq NOT IN ({})", if list.is_empty() { "-1".into() } else { list }),
            params![group, generation],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// The recorded points of a group's generation, oldest first.
    pub fn points(&self, group: &str, generation: u32) -> Result<Vec<crate::model::PointRecord>, PipelineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, time_ms, consistency, direction FROM recovery_points WHERE grp = ?1 AND generation = ?2 ORDER BY seq")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![group, generation], |r| {
                Ok(crate::model::PointRecord { seq: r.get::<_, i64>(0)? as u64, time_ms: r.get::<_, i64>(1)? as u64, consistency: r.get(2)?, direction: r.get(3)? })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    // ---- events ----

    /// Records an event.
    pub fn event(&self, severity: &str, object: &str, kind: &str, message: &str) -> Result<(), PipelineError> {
        self.conn()
            .execute(
                "INSERT INTO events(time_ms, severity, object, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now_ms() as i64, severity, object, kind, message],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The newest `limit` events, newest last.
    pub fn events(&self, limit: u32) -> Result<Vec<crate::model::Event>, PipelineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, time_ms, severity, object, kind, message FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?1) ORDER BY id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(crate::model::Event {
                    id: r.get::<_, i64>(0)? as u64,
                    time_ms: r.get::<_, i64>(1)? as u64,
                    severity: r.get(2)?,
                    object: r.get(3)?,
                    kind: r.get(4)?,
                    message: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}

fn decode<T: DeserializeOwned>(path: &Path, table: &str, name: &str, json: &str) -> Result<T, PipelineError> {
    serde_json::from_str(json).map_err(|e| PipelineError::Database {
        path: path.to_path_buf(),
        message: format!("row `{name}` of table {table} does not decode ({e}); restore the database from a backup"),
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    homeward_replication::cycle::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Policy};

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = s.conn().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.conn().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(s);
        assert!(matches!(Store::open(dir.path()), Err(PipelineError::SchemaTooNew { found, .. }) if found == SCHEMA_VERSION + 1));
    }

    #[test]
    fn the_failback_policy_is_created_with_the_forward_one_and_cannot_be_edited() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.ensure_policies(&Policy::forward_default()).unwrap();
        let ps = s.policies().unwrap();
        let (fb, editable) = ps.iter().find(|(p, _)| p.direction == Direction::AzureToOnPrem).unwrap();
        assert!(!editable);
        assert_eq!((fb.rpo_threshold_s, fb.retention_s, fb.app_consistent_s), (900, 86_400, 3600));
        let mut changed = fb.clone();
        changed.rpo_threshold_s = 60;
        assert!(matches!(s.edit_policy(&changed), Err(PipelineError::Refused { .. })));
        let mut fwd = Policy::forward_default();
        fwd.rpo_threshold_s = 300;
        s.edit_policy(&fwd).unwrap();
        // Opening again keeps both as they are.
        s.ensure_policies(&Policy::forward_default()).unwrap();
        assert_eq!(s.policy("forward").unwrap().unwrap().rpo_threshold_s, 300);
        let fb2 = s.policies().unwrap().into_iter().find(|(p, _)| p.name == fb.name).unwrap().0;
        assert_eq!(fb2.rpo_threshold_s, 900);
    }

    #[test]
    fn backup_and_restore_round_trip_and_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.event("info", "vm web01", "test", "before backup").unwrap();
        let file = dir.path().join("backups/one.db");
        s.backup(&file).unwrap();
        s.event("info", "vm web01", "test", "after backup").unwrap();
        drop(s);
        let other = tempfile::tempdir().unwrap();
        assert_eq!(Store::restore(other.path(), &file).unwrap(), SCHEMA_VERSION);
        let restored = Store::open(other.path()).unwrap();
        let msgs: Vec<String> = restored.events(10).unwrap().into_iter().map(|e| e.message).collect();
        assert_eq!(msgs, vec!["before backup".to_string()]);
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all, not even close to one......").unwrap();
        assert!(Store::restore(other.path(), &junk).is_err());
        // The refused restore left the restored database alone.
        assert_eq!(Store::open(other.path()).unwrap().events(10).unwrap().len(), 1);
    }
}
