/** A volume as an instance sees it (its own file: the agent needs it without TypeBox). */

export interface VolumeConfig {
  readonly name: string;
  /** runtime docker: the mount point in the container. */
  readonly path: string;
}

/** The variable that gives an instance its volume's path: data → PILOT_VOLUME_DATA, user-files → PILOT_VOLUME_USER_FILES. */
export const volumeEnvName = (name: string): string => `PILOT_VOLUME_${name.toUpperCase().replaceAll('-', '_')}`;
