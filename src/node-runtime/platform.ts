/** Which runtime package fits a machine. The npm registry's official builds: node-<platform>-<arch>. */
import { fail } from '../core/errors.js';

/** Platforms whose Node.js packages Pilot fetches, runs and has tested. */
export const SUPPORTED_PLATFORMS = ['linux-x64'] as const;
export type NodePlatform = (typeof SUPPORTED_PLATFORMS)[number];

/** The platform name for (platform, arch), e.g. linux-x64; a clear error for any other machine. */
export function nodePlatform(platform: string = process.platform, arch: string = process.arch): NodePlatform {
  const name = `${platform}-${arch}`;
  const hit = SUPPORTED_PLATFORMS.find((p) => p === name);
  if (hit !== undefined) return hit;
  throw fail.platformCannotPin({ name, supportedPlatforms: SUPPORTED_PLATFORMS.join(', ') });
}

/** The npm package holding the official Node.js binary for a platform. */
export function runtimePackage(platform: NodePlatform): string {
  return `node-${platform}`;
}
