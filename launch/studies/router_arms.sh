# Sourced by router_study.sh and router_bench.sh (with $root, $out and $reg_sets set): the
# configs of the router study's arms. `arm_config ARM` sets $cfg and the overrides $sets, and
# writes the arm's `vmoe plan --json` to $out/configs/ARM.plan.json once.
mkdir -p "$out/configs"
dense_cfg=$root/configs/experiments/fashion_vit_ti.textproto
vmoe_cfg=$root/configs/experiments/fashion_vmoe_ti.textproto
# Placement by a field the config does not set (every_n is set; only one placement may be).
sed 's/every_n: 2/last_n: 1/' "$vmoe_cfg" >"$out/configs/last1.textproto"

# The config and overrides of an arm: sets $cfg and $sets.
arm_config() {
  cfg=$vmoe_cfg
  sets=()
  case $1 in
    dense) cfg=$dense_cfg ;;
    every2) ;;
    last1) cfg=$out/configs/last1.textproto ;;
    e4) sets=(--set model.moe.num_experts=4) ;;
    e16) sets=(--set model.moe.num_experts=16) ;;
    k1) sets=(--set model.moe.k=1) ;;
    bpr_c05) sets=(--set model.moe.capacity_factor=0.5 --set model.moe.batch_priority=true) ;;
    vanilla_c05) sets=(--set model.moe.capacity_factor=0.5) ;;
    dropless | experts_choice | soft) cfg=$root/configs/experiments/fashion_vmoe_ti_$1.textproto ;;
    dense_reg)
      cfg=$dense_cfg
      sets=("${reg_sets[@]}")
      ;;
    every2_reg) sets=("${reg_sets[@]}") ;;
    *) echo "router study: error: unknown arm '$1'" >&2 && exit 2 ;;
  esac
  if [[ ! -f $out/configs/$1.plan.json ]]; then
    "$vmoe" plan --config "$cfg" "${sets[@]}" --json >"$out/configs/$1.plan.json"
  fi
}

