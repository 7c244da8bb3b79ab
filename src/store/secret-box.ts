/**
 * Secrets at rest: AES-256-GCM with a key kept in $PILOT_HOME/secret.key (32 random bytes, 0600).
 * A sealed value is "v1:" + base64(iv 12 bytes | tag 16 bytes | ciphertext); the version prefix
 * leaves room for key rotation. Opening a value sealed with another key, or tampered with, throws.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fail } from '../core/errors.js';

export class SecretBox {
  private readonly key: Buffer;

  constructor(keyFile: string) {
    if (existsSync(keyFile)) {
      this.key = readFileSync(keyFile);
      if (this.key.length !== 32) throw fail.invalidSecretKey({ keyFile });
      chmodSync(keyFile, 0o600);
    } else {
      this.key = randomBytes(32);
      writeFileSync(keyFile, this.key, { mode: 0o600, flag: 'wx' });
    }
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return 'v1:' + Buffer.concat([iv, c.getAuthTag(), body]).toString('base64');
  }

  open(sealed: string): string {
    if (!sealed.startsWith('v1:')) throw fail.unknownSealedSecretFormat();
    const raw = Buffer.from(sealed.slice(3), 'base64');
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
    } catch (err) {
      throw fail.sealedSecretCannotOpened({ cause: err });
    }
  }
}
