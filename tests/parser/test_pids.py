"""Known vectors for every PID of the catalogue, expectations worked out by hand from SAE J1979.

Each row: PID, its data bytes, and the values a reader of the standard computes from them (the
arithmetic is in the comments). The answers are fed as headers-off adapter output ``41 PID data``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from gateway.obd import pids

# fmt: off
VECTORS: dict[int, tuple[str, dict[str, Any]]] = {
    # BE=1011 1110 → 01 03 04 05 06 07; 1F=0001 1111 → 0C-10; A8=1010 1000 → 11 13 15; 13=0001 0011 → 1C 1F 20
    0x00: ("BE 1F A8 13", {"pids_supported_01_20": (1, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 19, 21, 28, 31, 32)}),
    # A=83: MIL bit 7 on, 3 DTCs; B=61=0110 0001: misfire monitor available (bit 0) and complete
    # (bit 4 clear), fuel system and components monitors not available (bits 1, 2) but flagged
    # incomplete (bits 5, 6); bit 3 clear: spark ignition
    0x01: ("83 61 65 04", {"mil": True, "dtc_count": 3, "compression_ignition": False,
                           "misfire_monitor_available": True, "fuel_system_monitor_available": False,
                           "components_monitor_available": False, "misfire_monitor_incomplete": False,
                           "fuel_system_monitor_incomplete": True, "components_monitor_incomplete": True,
                           # spark ignition, C=65=0110 0101 available: catalyst (0), evap (2), O2 sensor (5),
                           # O2 heater (6); D=04=0000 0100 incomplete: evap (2)
                           "catalyst_monitor_available": True, "catalyst_monitor_incomplete": False,
                           "heated_catalyst_monitor_available": False, "heated_catalyst_monitor_incomplete": False,
                           "evap_system_monitor_available": True, "evap_system_monitor_incomplete": True,
                           "secondary_air_monitor_available": False, "secondary_air_monitor_incomplete": False,
                           "ac_refrigerant_monitor_available": False, "ac_refrigerant_monitor_incomplete": False,
                           "o2_sensor_monitor_available": True, "o2_sensor_monitor_incomplete": False,
                           "o2_sensor_heater_monitor_available": True, "o2_sensor_heater_monitor_incomplete": False,
                           "egr_system_monitor_available": False, "egr_system_monitor_incomplete": False,
                           "readiness_since_dtc_clear": "616504"}),
    0x02: ("01 33", {"freeze_frame_dtc": "P0133"}),
    0x03: ("02 00", {"fuel_system_1_status": "closed_loop", "fuel_system_2_status": "off"}),
    0x04: ("80", {"engine_load": 12800 / 255}),                 # 128×100/255 = 50.196…
    0x05: ("7B", {"engine_coolant_temperature": 83.0}),         # 123 − 40
    0x06: ("80", {"short_term_fuel_trim_bank_1": 0.0}),         # 128×100/128 − 100
    0x07: ("00", {"long_term_fuel_trim_bank_1": -100.0}),
    0x08: ("FF", {"short_term_fuel_trim_bank_2": 99.21875}),    # 255×100/128 − 100
    0x09: ("A0", {"long_term_fuel_trim_bank_2": 25.0}),         # 160×100/128 − 100
    0x0A: ("64", {"fuel_pressure": 300.0}),                     # 3 × 100
    0x0B: ("65", {"intake_manifold_pressure": 101.0}),
    0x0C: ("1A F8", {"engine_rpm": 1726.0}),                    # (26×256 + 248)/4 = 6904/4
    0x0D: ("32", {"speed": 50.0}),
    0x0E: ("90", {"timing_advance": 8.0}),                      # 144/2 − 64
    0x0F: ("46", {"intake_air_temperature": 30.0}),             # 70 − 40
    0x10: ("01 F4", {"maf": 5.0}),                              # 500/100
    0x11: ("FF", {"throttle_position": 100.0}),
    0x12: ("04", {"secondary_air_status": "outside_atmosphere_or_off"}),
    0x13: ("33", {"o2_sensors_present": 0x33}),
    **{0x14 + i: ("64 80", {f"o2_sensor_{i + 1}_voltage": 0.5,  # 100/200 V; trim 128×100/128 − 100
                            f"o2_sensor_{i + 1}_fuel_trim": 0.0}) for i in range(8)},
    0x1C: ("06", {"obd_standard": "EOBD"}),
    0x1D: ("11", {"o2_sensors_present_4_banks": 0x11}),
    0x1E: ("01", {"pto_active": True}),
    0x1F: ("00 3C", {"time_since_engine_start": 60.0}),
    0x20: ("80 00 00 01", {"pids_supported_21_40": (0x21, 0x40)}),
    0x21: ("01 00", {"distance_with_mil_on": 256.0}),
    0x22: ("00 64", {"fuel_rail_pressure_relative": 7.9}),      # 100 × 0.079
    0x23: ("00 0A", {"fuel_rail_gauge_pressure": 100.0}),       # 10 × 10
    # AB=0x8000: 2/65536 × 32768 = 1.0; CD=0x4000: 8/65536 × 16384 = 2.0 V
    **{0x24 + i: ("80 00 40 00", {f"o2_sensor_{i + 1}_lambda": 1.0,
                                  f"o2_sensor_{i + 1}_wr_voltage": 2.0}) for i in range(8)},
    0x2C: ("33", {"commanded_egr": 20.0}),                      # 51×100/255
    0x2D: ("80", {"egr_error": 0.0}),
    0x2E: ("66", {"commanded_evaporative_purge": 40.0}),        # 102×100/255
    0x2F: ("CC", {"fuel_level": 80.0}),                         # 204×100/255
    0x30: ("05", {"warmups_since_dtc_clear": 5.0}),
    0x31: ("03 E8", {"distance_since_dtc_clear": 1000.0}),
    0x32: ("FF F8", {"evap_vapor_pressure": -2.0}),             # signed 0xFFF8 = −8, /4
    0x33: ("65", {"barometric_pressure": 101.0}),
    # AB=0x8000 → λ 1.0; CD=0x8100 = 33024: 33024/256 − 128 = 1.0 mA
    **{0x34 + i: ("80 00 81 00", {f"o2_sensor_{i + 1}_wr_lambda": 1.0,
                                  f"o2_sensor_{i + 1}_wr_current": 1.0}) for i in range(8)},
    0x3C: ("04 4C", {"catalyst_temperature_bank_1_sensor_1": 70.0}),  # 1100/10 − 40
    0x3D: ("04 4C", {"catalyst_temperature_bank_2_sensor_1": 70.0}),
    0x3E: ("03 E8", {"catalyst_temperature_bank_1_sensor_2": 60.0}),  # 1000/10 − 40
    0x3F: ("00 00", {"catalyst_temperature_bank_2_sensor_2": -40.0}),
    0x40: ("00 00 00 01", {"pids_supported_41_60": (0x60,)}),
    # B=07: the three continuous monitors enabled this cycle (bits 0-2), none incomplete (bits 4-6)
    0x41: ("00 07 E5 00", {"misfire_monitor_enabled_this_cycle": True,
                           "fuel_system_monitor_enabled_this_cycle": True,
                           "components_monitor_enabled_this_cycle": True,
                           "misfire_monitor_incomplete_this_cycle": False,
                           "fuel_system_monitor_incomplete_this_cycle": False,
                           "components_monitor_incomplete_this_cycle": False,
                           # spark (B bit 3 clear); C=E5=1110 0101 enabled: catalyst, evap, O2 sensor, O2 heater,
                           # EGR; D=00: nothing incomplete
                           "catalyst_monitor_enabled_this_cycle": True,
                           "catalyst_monitor_incomplete_this_cycle": False,
                           "heated_catalyst_monitor_enabled_this_cycle": False,
                           "heated_catalyst_monitor_incomplete_this_cycle": False,
                           "evap_system_monitor_enabled_this_cycle": True,
                           "evap_system_monitor_incomplete_this_cycle": False,
                           "secondary_air_monitor_enabled_this_cycle": False,
                           "secondary_air_monitor_incomplete_this_cycle": False,
                           "ac_refrigerant_monitor_enabled_this_cycle": False,
                           "ac_refrigerant_monitor_incomplete_this_cycle": False,
                           "o2_sensor_monitor_enabled_this_cycle": True,
                           "o2_sensor_monitor_incomplete_this_cycle": False,
                           "o2_sensor_heater_monitor_enabled_this_cycle": True,
                           "o2_sensor_heater_monitor_incomplete_this_cycle": False,
                           "egr_system_monitor_enabled_this_cycle": True,
                           "egr_system_monitor_incomplete_this_cycle": False,
                           "monitor_status_this_cycle": "0007E500"}),
    0x42: ("30 D4", {"control_module_voltage": 12.5}),          # 12500/1000
    0x43: ("00 FF", {"absolute_load": 100.0}),                  # 255×100/255
    0x44: ("80 00", {"commanded_equivalence_ratio": 1.0}),
    0x45: ("33", {"relative_throttle_position": 20.0}),
    0x46: ("3C", {"ambient_air_temperature": 20.0}),
    0x47: ("66", {"absolute_throttle_position_b": 40.0}),
    0x48: ("99", {"absolute_throttle_position_c": 60.0}),       # 153×100/255
    0x49: ("CC", {"accelerator_pedal_position_d": 80.0}),
    0x4A: ("FF", {"accelerator_pedal_position_e": 100.0}),
    0x4B: ("00", {"accelerator_pedal_position_f": 0.0}),
    0x4C: ("33", {"commanded_throttle_actuator": 20.0}),
    0x4D: ("00 1E", {"time_with_mil_on": 30.0}),
    0x4E: ("01 00", {"time_since_dtc_clear": 256.0}),
    0x4F: ("02 03 04 05", {"max_equivalence_ratio": 2.0, "max_o2_sensor_voltage": 3.0,
                           "max_o2_sensor_current": 4.0, "max_intake_manifold_pressure": 50.0}),
    0x50: ("0A 00 00 00", {"max_maf": 100.0}),                  # 10 × 10
    0x51: ("04", {"fuel_type": "diesel"}),
    0x52: ("33", {"ethanol_fuel_percent": 20.0}),
    0x53: ("00 C8", {"evap_vapor_pressure_absolute": 1.0}),     # 200/200
    0x54: ("80 00", {"evap_vapor_pressure_wide": 1.0}),         # 32768 − 32767
    0x55: ("80 A0", {"short_term_secondary_o2_trim_bank_1": 0.0, "short_term_secondary_o2_trim_bank_3": 25.0}),
    0x56: ("00 80", {"long_term_secondary_o2_trim_bank_1": -100.0, "long_term_secondary_o2_trim_bank_3": 0.0}),
    0x57: ("A0 80", {"short_term_secondary_o2_trim_bank_2": 25.0, "short_term_secondary_o2_trim_bank_4": 0.0}),
    0x58: ("80 FF", {"long_term_secondary_o2_trim_bank_2": 0.0, "long_term_secondary_o2_trim_bank_4": 99.21875}),
    0x59: ("00 0A", {"fuel_rail_absolute_pressure": 100.0}),
    0x5A: ("66", {"relative_accelerator_pedal_position": 40.0}),
    0x5B: ("CC", {"hybrid_battery_remaining": 80.0}),
    0x5C: ("5A", {"engine_oil_temperature": 50.0}),
    0x5D: ("69 00", {"fuel_injection_timing": 0.0}),            # 26880/128 − 210
    0x5E: ("00 64", {"engine_fuel_rate": 5.0}),                 # 100/20 L/h
    0x5F: ("0E", {"emission_requirements": 14}),
    0x60: ("80 00 00 00", {"pids_supported_61_80": (0x61,)}),
    0x61: ("7D", {"drivers_demand_torque": 0.0}),               # 125 − 125
    0x62: ("96", {"actual_engine_torque": 25.0}),               # 150 − 125
    0x63: ("01 2C", {"engine_reference_torque": 300.0}),
    0x64: ("7D 8C 9B AA B9", {"engine_torque_idle": 0.0, "engine_torque_point_1": 15.0,
                              "engine_torque_point_2": 30.0, "engine_torque_point_3": 45.0,
                              "engine_torque_point_4": 60.0}),
    0x65: ("03 01", {"auxiliary_io_supported": 3, "auxiliary_io_status": 1}),
    0x66: ("03 00 40 00 80", {"maf_sensor_a": 2.0, "maf_sensor_b": 4.0}),  # 64/32, 128/32
    0x67: ("03 5A 64", {"engine_coolant_temperature_sensor_1": 50.0, "engine_coolant_temperature_sensor_2": 60.0}),
    0x68: ("3F 28 32 3C 46 50 5A", {"intake_air_temperature_bank_1_sensor_1": 0.0,
                                    "intake_air_temperature_bank_1_sensor_2": 10.0,
                                    "intake_air_temperature_bank_1_sensor_3": 20.0,
                                    "intake_air_temperature_bank_2_sensor_1": 30.0,
                                    "intake_air_temperature_bank_2_sensor_2": 40.0,
                                    "intake_air_temperature_bank_2_sensor_3": 50.0}),
    0x69: ("3F 33 66 80 99 CC A0", {"commanded_egr_a_duty_cycle": 20.0, "actual_egr_a_duty_cycle": 40.0,
                                    "egr_a_error": 0.0, "commanded_egr_b_duty_cycle": 60.0,
                                    "actual_egr_b_duty_cycle": 80.0, "egr_b_error": 25.0}),
    0x6A: ("0F 33 66 99 CC", {"commanded_intake_air_flow_a": 20.0, "relative_intake_air_flow_position_a": 40.0,
                              "commanded_intake_air_flow_b": 60.0, "relative_intake_air_flow_position_b": 80.0}),
    0x6B: ("0F 28 32 3C 46", {"egr_temperature_bank_1_sensor_1": 0.0, "egr_temperature_bank_1_sensor_2": 10.0,
                              "egr_temperature_bank_2_sensor_1": 20.0, "egr_temperature_bank_2_sensor_2": 30.0}),
    0x6C: ("0F 33 66 99 CC", {"commanded_throttle_actuator_a": 20.0, "relative_throttle_position_a": 40.0,
                              "commanded_throttle_actuator_b": 60.0, "relative_throttle_position_b": 80.0}),
    0x6D: ("3F 00 0A 00 14 5A 00 1E 00 28 64", {"commanded_fuel_rail_pressure_a": 100.0,
                                                "fuel_rail_pressure_a": 200.0, "fuel_rail_temperature_a": 50.0,
                                                "commanded_fuel_rail_pressure_b": 300.0,
                                                "fuel_rail_pressure_b": 400.0, "fuel_rail_temperature_b": 60.0}),
    0x6E: ("0F 00 0A 00 14 00 1E 00 28", {"commanded_injection_pressure_a": 100.0, "injection_pressure_a": 200.0,
                                          "commanded_injection_pressure_b": 300.0, "injection_pressure_b": 400.0}),
    0x6F: ("03 64 65", {"turbo_compressor_inlet_pressure_a": 100.0, "turbo_compressor_inlet_pressure_b": 101.0}),
    # 0x0C80 = 3200/32 = 100 kPa, 0x0D00 = 3328/32 = 104 kPa
    0x70: ("0F 0C 80 0D 00 0C 80 0D 00 05", {"commanded_boost_pressure_a": 100.0, "boost_pressure_a": 104.0,
                                             "commanded_boost_pressure_b": 100.0, "boost_pressure_b": 104.0,
                                             "boost_pressure_control_status": 5}),
    0x71: ("0F 33 66 99 CC 02", {"commanded_vgt_position_a": 20.0, "vgt_position_a": 40.0,
                                 "commanded_vgt_position_b": 60.0, "vgt_position_b": 80.0, "vgt_control_status": 2}),
    0x72: ("0F 33 66 99 CC", {"commanded_wastegate_a": 20.0, "wastegate_position_a": 40.0,
                              "commanded_wastegate_b": 60.0, "wastegate_position_b": 80.0}),
    0x73: ("03 27 10 4E 20", {"exhaust_pressure_bank_1": 100.0, "exhaust_pressure_bank_2": 200.0}),  # 10000/100
    0x74: ("03 0B B8 17 70", {"turbo_a_rpm": 30000.0, "turbo_b_rpm": 60000.0}),                     # 3000×10
    0x75: ("0F 5A 64 04 4C 03 E8", {"turbo_a_compressor_inlet_temperature": 50.0,
                                    "turbo_a_compressor_outlet_temperature": 60.0,
                                    "turbo_a_turbine_inlet_temperature": 70.0,
                                    "turbo_a_turbine_outlet_temperature": 60.0}),
    0x76: ("0F 5A 64 04 4C 03 E8", {"turbo_b_compressor_inlet_temperature": 50.0,
                                    "turbo_b_compressor_outlet_temperature": 60.0,
                                    "turbo_b_turbine_inlet_temperature": 70.0,
                                    "turbo_b_turbine_outlet_temperature": 60.0}),
    0x77: ("0F 28 32 3C 46", {"charge_air_cooler_temperature_bank_1_sensor_1": 0.0,
                              "charge_air_cooler_temperature_bank_1_sensor_2": 10.0,
                              "charge_air_cooler_temperature_bank_2_sensor_1": 20.0,
                              "charge_air_cooler_temperature_bank_2_sensor_2": 30.0}),
    # 0x044C=1100 → 70 °C, 0x03E8=1000 → 60, 0x076C=1900 → 150, 0 → −40
    0x78: ("0F 04 4C 03 E8 07 6C 00 00", {"egt_bank_1_sensor_1": 70.0, "egt_bank_1_sensor_2": 60.0,
                                          "egt_bank_1_sensor_3": 150.0, "egt_bank_1_sensor_4": -40.0}),
    0x79: ("0F 04 4C 03 E8 07 6C 00 00", {"egt_bank_2_sensor_1": 70.0, "egt_bank_2_sensor_2": 60.0,
                                          "egt_bank_2_sensor_3": 150.0, "egt_bank_2_sensor_4": -40.0}),
    # delta signed 0xFF9C = −100 → −1.00 kPa
    0x7A: ("07 FF 9C 27 10 4E 20", {"dpf_bank_1_delta_pressure": -1.0, "dpf_bank_1_inlet_pressure": 100.0,
                                    "dpf_bank_1_outlet_pressure": 200.0}),
    0x7B: ("07 FF 9C 27 10 4E 20", {"dpf_bank_2_delta_pressure": -1.0, "dpf_bank_2_inlet_pressure": 100.0,
                                    "dpf_bank_2_outlet_pressure": 200.0}),
    0x7C: ("0F 04 4C 03 E8 07 6C 00 00", {"dpf_bank_1_inlet_temperature": 70.0, "dpf_bank_1_outlet_temperature": 60.0,
                                          "dpf_bank_2_inlet_temperature": 150.0,
                                          "dpf_bank_2_outlet_temperature": -40.0}),
    0x7D: ("05", {"nox_nte_control_area_status": 5}),
    0x7E: ("0A", {"pm_nte_control_area_status": 10}),
    0x7F: ("07 00 00 0E 10 00 00 01 2C 00 00 00 3C", {"engine_run_time": 3600.0, "engine_idle_run_time": 300.0,
                                                      "engine_pto_run_time": 60.0}),
    0x80: ("00 00 00 01", {"pids_supported_81_a0": (0xA0,)}),
    0x81: ("1F 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 01 00 00",
           {"aecd_1_run_time": 1.0, "aecd_2_run_time": 2.0, "aecd_3_run_time": 3.0, "aecd_4_run_time": 4.0,
            "aecd_5_run_time": 65536.0}),
    0x82: ("1F 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 01 00 00",
           {"aecd_6_run_time": 1.0, "aecd_7_run_time": 2.0, "aecd_8_run_time": 3.0, "aecd_9_run_time": 4.0,
            "aecd_10_run_time": 65536.0}),
    0x83: ("0F 00 64 00 C8 01 2C 01 90", {"nox_bank_1_sensor_1": 100.0, "nox_bank_1_sensor_2": 200.0,
                                          "nox_bank_2_sensor_1": 300.0, "nox_bank_2_sensor_2": 400.0}),
    0x84: ("5A", {"manifold_surface_temperature": 50.0}),
    # 200/200 L/h, 400/200 L/h, 204×100/255 %, 3600 s
    0x85: ("0F 00 C8 01 90 CC 00 00 0E 10", {"reagent_consumption": 1.0, "reagent_demand": 2.0,
                                             "reagent_tank_level": 80.0, "nox_warning_indicator_time": 3600.0}),
    0x86: ("03 00 50 00 A0", {"pm_bank_1_sensor_1": 1.0, "pm_bank_2_sensor_1": 2.0}),  # 80/80, 160/80 mg/m³
    0x87: ("03 0C 80 0D 00", {"intake_manifold_pressure_a": 100.0, "intake_manifold_pressure_b": 104.0}),
    0x88: ("01 02 03 04 05 06 07 08 09 0A 0B 0C 0D", {"scr_inducement_system": "0102030405060708090A0B0C0D"}),
    0x89: ("1F" + "".join(f" 00 00 00 {k:02X}" for k in range(1, 11)),
           {f"aecd_{11 + i}_timer_{t + 1}": float(2 * i + t + 1) for i in range(5) for t in range(2)}),
    0x8A: ("1F" + "".join(f" 00 00 00 {k:02X}" for k in range(1, 11)),
           {f"aecd_{16 + i}_timer_{t + 1}": float(2 * i + t + 1) for i in range(5) for t in range(2)}),
    0x8B: ("01 02 03 04 05 06 07", {"diesel_aftertreatment_status": "01020304050607"}),
    0x8C: ("00 " * 16 + "FF", {"o2_sensor_wide_range": "00" * 16 + "FF"}),
    0x8D: ("33", {"absolute_throttle_position_g": 20.0}),
    0x8E: ("96", {"engine_friction_torque": 25.0}),
    0x8F: ("A1 B2 C3 D4 E5 F6 07", {"pm_sensor_output": "A1B2C3D4E5F607"}),
    0x90: ("01 02 03", {"wwh_obd_vehicle_information": "010203"}),
    0x91: ("01 02 03 04 05", {"wwh_obd_ecu_information": "0102030405"}),
    0x92: ("12 34", {"fuel_system_control_status": "1234"}),
    0x93: ("01 02 03", {"wwh_obd_counters": "010203"}),
    0x94: ("00 " * 11 + "01", {"nox_inducement_status": "00" * 11 + "01"}),
    0x98: ("0F 04 4C 03 E8 07 6C 00 00", {"egt_bank_1_sensor_5": 70.0, "egt_bank_1_sensor_6": 60.0,
                                          "egt_bank_1_sensor_7": 150.0, "egt_bank_1_sensor_8": -40.0}),
    0x99: ("0F 04 4C 03 E8 07 6C 00 00", {"egt_bank_2_sensor_5": 70.0, "egt_bank_2_sensor_6": 60.0,
                                          "egt_bank_2_sensor_7": 150.0, "egt_bank_2_sensor_8": -40.0}),
    0x9A: ("01 02 03 04 05 06", {"hybrid_ev_system_data": "010203040506"}),
    0x9B: ("0A 0B 0C 0D", {"def_sensor_output": "0A0B0C0D"}),
    0x9C: ("11 " * 17, {"o2_sensor_wide_range_data": "11" * 17}),
    0x9D: ("00 32 00 64", {"engine_fuel_mass_rate": 1.0, "vehicle_fuel_mass_rate": 2.0}),  # 50/50, 100/50 g/s
    0x9E: ("01 F4", {"exhaust_flow_rate": 100.0}),              # 500/5 kg/h
    0x9F: ("01 02 03 04 05 06 07 08 09", {"fuel_system_percentage_use": "010203040506070809"}),
    0xA0: ("00 00 00 01", {"pids_supported_a1_c0": (0xC0,)}),
    # A=05: sensors b1s1 and b2s1 only; 0x0064 = 100 ppm, 0x012C = 300 ppm
    0xA1: ("05 00 64 00 C8 01 2C 01 90", {"nox_corrected_bank_1_sensor_1": 100.0,
                                          "nox_corrected_bank_2_sensor_1": 300.0}),
    0xA2: ("00 40", {"cylinder_fuel_rate": 2.0}),               # 64/32 mg/stroke
    0xA6: ("00 01 86 A0", {"odometer": 10000.0}),               # 100000/10 km
    0xC0: ("80 00 00 00", {"pids_supported_c1_e0": (0xC1,)}),
}
# fmt: on


def _values(build: ModuleType, text: str) -> dict[str, Any]:
    readings = build.decode(text.encode(), False, 6)
    return {r.name: r.value for r in readings}


def test_every_catalogue_pid_has_a_vector() -> None:
    assert set(VECTORS) == set(pids.PIDS)


def test_every_pid_of_the_reference_table_is_catalogued() -> None:
    # the reference's refresh-rate table runs from 00 to A2 with 95-97 absent
    expected = {p for p in range(0xA3) if p not in (0x95, 0x96, 0x97)}
    assert expected <= set(pids.PIDS)


@pytest.mark.parametrize("pid", sorted(VECTORS), ids=lambda p: f"{p:02X}")
def test_known_vector(build: ModuleType, pid: int) -> None:
    data, expected = VECTORS[pid]
    got = _values(build, f"41 {pid:02X} {data}")
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert type(got[name]) is type(value), name
        if isinstance(value, float):
            assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        else:
            assert got[name] == value, name
    units = {f.name: f.unit for f in pids.PIDS[pid].fields}
    for r in build.decode(f"41 {pid:02X} {data}".encode(), False, 6):
        assert (r.ecu, r.service, r.pid, r.unit) == (0, 1, pid, units[r.name])


def test_drust_names_and_units(build: ModuleType) -> None:
    readings = build.decode(b"41 0D 32 0C 1A F8 05 7B", False, 6)
    assert [(r.name, r.value, r.unit) for r in readings] == [
        ("speed", 50.0, "km/h"),
        ("engine_rpm", 1726.0, "rpm"),
        ("engine_coolant_temperature", 83.0, "°C"),
    ]


def test_o2_trim_ff_means_not_used_for_trim(build: ModuleType) -> None:
    assert _values(build, "41 14 C8 FF") == {"o2_sensor_1_voltage": 1.0}


def test_support_bits_gate_values(build: ModuleType) -> None:
    assert _values(build, "41 67 02 5A 64") == {"engine_coolant_temperature_sensor_2": 60.0}
    assert _values(build, "41 66 01 00 40 00 80") == {"maf_sensor_a": 2.0}
    assert _values(build, "41 78 00 04 4C 03 E8 07 6C 00 00") == {}


def test_pid_01_compression_ignition_and_no_mil(build: ModuleType) -> None:
    # B=0F: bits 0-2 monitors available, bit 3 compression ignition, bits 4-6 clear: all complete;
    # C=41=0100 0001: NMHC catalyst (0) and PM filter (6) monitors available; D=40: PM filter incomplete
    assert _values(build, "41 01 00 0F 41 40") == {
        "mil": False,
        "dtc_count": 0,
        "compression_ignition": True,
        "misfire_monitor_available": True,
        "fuel_system_monitor_available": True,
        "components_monitor_available": True,
        "misfire_monitor_incomplete": False,
        "fuel_system_monitor_incomplete": False,
        "components_monitor_incomplete": False,
        "nmhc_catalyst_monitor_available": True,
        "nmhc_catalyst_monitor_incomplete": False,
        "nox_scr_monitor_available": False,
        "nox_scr_monitor_incomplete": False,
        "boost_pressure_monitor_available": False,
        "boost_pressure_monitor_incomplete": False,
        "exhaust_gas_sensor_monitor_available": False,
        "exhaust_gas_sensor_monitor_incomplete": False,
        "pm_filter_monitor_available": True,
        "pm_filter_monitor_incomplete": True,
        "egr_vvt_monitor_available": False,
        "egr_vvt_monitor_incomplete": False,
        "readiness_since_dtc_clear": "0F4140",
    }


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("01 33", "P0133"),
        ("41 23", "C0123"),
        ("80 45", "B0045"),
        ("C1 00", "U0100"),
        ("D2 34", "U1234"),
        ("3F FF", "P3FFF"),
    ],
)
def test_dtc_letters_and_digits(build: ModuleType, raw: str, code: str) -> None:
    assert _values(build, f"41 02 {raw}") == {"freeze_frame_dtc": code}


def test_unknown_enum_value(build: ModuleType) -> None:
    assert _values(build, "41 51 FE") == {"fuel_type": "unknown_0xFE"}


def test_names_are_unique_and_snake_case() -> None:
    names = [f.name for p in pids.PIDS.values() for f in p.fields]
    assert len(names) == len(set(names))
    for name in names:
        assert name == name.lower() and " " not in name, name


def test_rates_follow_the_reference() -> None:
    assert pids.PIDS[0x0C].rate_hz == 5.0
    assert pids.PIDS[0x0D].rate_hz == 1.0
    assert pids.PIDS[0x2F].rate_hz == pytest.approx(1 / 60)
    assert pids.PIDS[0x03].rate_hz == 0.1
    assert pids.PIDS[0x00].rate_hz is None


def test_docs_page_is_generated_from_the_table() -> None:
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "pids.md"
    assert page.read_text(encoding="utf-8") == pids.markdown()
