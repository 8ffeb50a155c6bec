import { connect } from '../db/connect.ts';
import { ensureDatabase, startCluster, type Cluster } from '../db/cluster.ts';
import { clusterHome } from '../db/pg-home.ts';
import { EMBEDDED_DATABASE, embeddedUrl } from '../db/database-url.ts';
import { migrate } from '../migrate/migrate.ts';

/**
 * The embedded default of `espf run`: a durable PostgreSQL with logical
 * replication in `dir` (ESPF_HOME, default .espf/), or where `dir`/location says
 * when it must live outside the repository, its database `espf` migrated.
 * Its data survives restarts; a cluster already running there is reused.
 */
export async function startEmbedded(dir: string, port: number): Promise<{ cluster: Cluster; url: string; outside: boolean }> {
  // As root with the repository in a private directory, the data lives outside it (src/db/pg-home.ts).
  const { home, outside } = clusterHome(dir);
  const cluster = await startCluster({ dir: home, port, durable: true });
  const admin = connect({ connectionString: cluster.url, poolSize: 1 });
  try {
    await ensureDatabase(admin, EMBEDDED_DATABASE);
  } finally {
    await admin.dispose();
  }
  const url = embeddedUrl(cluster.port);
  const db = connect({ connectionString: url, poolSize: 1 });
  try {
    await migrate(db);
  } finally {
    await db.dispose();
  }
  return { cluster, url, outside };
}
