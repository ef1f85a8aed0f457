# Shared settings of the one-node test cluster (sourced by configure.sh, start.sh, stop.sh).
PACER_SLURM_DIR="${PACER_SLURM_DIR:-/var/tmp/pacer-slurm}"
SLURM_CONF_FILE="${SLURM_CONF_FILE:-/etc/slurm/slurm.conf}"
