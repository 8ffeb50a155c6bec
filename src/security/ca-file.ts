import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { oneLine } from '../errors.ts';

/** The largest CA bundle espf reads (the system bundle of a distribution is about 220 KiB). */
export const MAX_CA_BYTES = 1024 * 1024;

/**
 * Reads an http handler's `ca_file` (docs/security.md, "https receivers and
 * ca_file"), asynchronously and only when it is a regular file of at most
 * MAX_CA_BYTES: a device (`/dev/zero`), a FIFO or a folder is refused without
 * reading it, so a row cannot make espf run block or fill its memory. The path
 * must be absolute (the database checks that too, sql/023_ca_file_check.sql) and,
 * when `dir` (ESPF_CA_DIR) is set, lie inside that folder once symbolic links
 * are resolved. Every refusal is an ESPF_CA_FILE error naming the file.
 */
export async function readCaFile(file: string, dir: string | undefined): Promise<Buffer> {
  // No `cause`: the message is the whole reason an attempt shows (src/delivery/http-client.ts).
  const fail = (why: string): never => {
    throw Object.assign(new Error(`ca_file ${file} ${why}`), { code: 'ESPF_CA_FILE' });
  };
  if (!path.isAbsolute(file)) fail('is not an absolute path');
  let real = file;
  try {
    real = await realpath(file);
    if (dir !== undefined) {
      const root = await realpath(dir);
      if (!real.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) fail(`is not inside ESPF_CA_DIR=${dir}`);
    }
  } catch (err) {
    if ((err as { code?: string }).code === 'ESPF_CA_FILE') throw err;
    fail(`cannot be read (${(err as { code?: string }).code ?? oneLine(err)})`);
  }
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    // O_NONBLOCK: opening a FIFO does not wait for a writer.
    fh = await open(real, constants.O_RDONLY | constants.O_NONBLOCK);
    const st = await fh.stat();
    if (!st.isFile()) fail(`is not a regular file (${st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO' : 'a device or socket'})`);
    if (st.size > MAX_CA_BYTES) fail(`is ${st.size} bytes; at most ${MAX_CA_BYTES}`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead);
  } catch (err) {
    if ((err as { code?: string }).code === 'ESPF_CA_FILE') throw err;
    return fail(`cannot be read (${(err as { code?: string }).code ?? oneLine(err)})`);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
