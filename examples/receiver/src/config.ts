// Reads the receiver's settings from environment variables (see README.md).
import type { AuthConfig } from './auth.ts';
import type { ReceiverOptions } from './server.ts';

export interface EnvConfig {
  port: number;
  host: string | undefined;
  options: ReceiverOptions;
}

export class ConfigError extends Error {}

function need(env: NodeJS.ProcessEnv, name: string, method: string): string {
  const v = env[name];
  if (v === undefined || v === '') throw new ConfigError(`AUTH_METHOD=${method} needs ${name}`);
  return v;
}

export function authFromEnv(env: NodeJS.ProcessEnv): AuthConfig {
  const method = env.AUTH_METHOD === undefined || env.AUTH_METHOD === '' ? 'None' : env.AUTH_METHOD;
  switch (method) {
    case 'None':
      return { method };
    case 'Basic':
      return { method, user: need(env, 'BASIC_USER', method), key: need(env, 'BASIC_KEY', method) };
    case 'Custom':
      return { method, type: need(env, 'CUSTOM_TYPE', method), credentials: need(env, 'CUSTOM_CREDENTIALS', method) };
    case 'Signature':
      return { method, keys: { [need(env, 'SIGNATURE_KEY_ID', method)]: need(env, 'SIGNATURE_KEY', method) } };
    default:
      throw new ConfigError(`AUTH_METHOD must be None, Basic, Custom or Signature, got "${method}"`);
  }
}

export function configFromEnv(env: NodeJS.ProcessEnv): EnvConfig {
  const rawPort = env.PORT === undefined || env.PORT === '' ? '8080' : env.PORT;
  if (!/^\d+$/.test(rawPort) || Number(rawPort) > 65535) throw new ConfigError(`PORT must be 0..65535, got "${rawPort}"`);
  return {
    port: Number(rawPort),
    host: env.HOST === undefined || env.HOST === '' ? undefined : env.HOST,
    options: {
      auth: authFromEnv(env),
      authHeader: env.AUTH_HEADER === undefined || env.AUTH_HEADER === '' ? 'Authorization' : env.AUTH_HEADER,
    },
  };
}
